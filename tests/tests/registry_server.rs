#![forbid(unsafe_code)]
//! `berth registry serve` on a loopback port and a tempdir root, driven by the
//! clients users have: skopeo, Debian's dockerd, and curl for the protocol's
//! corners (ranges, digests, references, pagination, referrers).

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berthd::{free_loopback_port, Berthd};
use berth_tests::dockerd::Dockerd;
use berth_tests::fake_registry::incompressible;
use berth_tests::host::{assert_success, describe, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout, workspace_binary};
use sha2::{Digest as _, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A running `berth registry serve`; dropping it kills the process (by its
/// PID, which this guard started) and removes the root.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    scheme: &'static str,
    extra: Vec<String>,
}

/// `berth registry serve` on `port` with its root and log under `dir`.
fn spawn(dir: &Path, port: u16, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .expect("open log");
    Command::new(workspace_binary("berth"))
        .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
        .arg("--root")
        .arg(dir.join("root"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .spawn()
        .expect("spawn berth registry serve")
}

impl Registry {
    fn start(extra: &[&str]) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(dir.path(), port, &extra);
        let scheme = if extra.iter().any(|a| a == "--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut registry = Registry {
            child,
            port,
            dir,
            scheme,
            extra,
        };
        registry.wait_until_listening();
        registry
    }

    /// SIGKILL, as a crash would, then the same command again on the same root.
    fn crash_and_restart(&mut self) {
        self.stop();
        self.restart();
    }

    /// Kills the server (SIGKILL) and waits for it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same command again on the same root.
    fn restart(&mut self) {
        self.child = spawn(self.dir.path(), self.port, &self.extra);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("registry exited with {status}: {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "registry not listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.host())
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        path
    }

    /// A raw request with curl; `body` is sent as-is.
    fn http(&self, method: &str, path: &str, headers: &[&str], body: Option<&[u8]>) -> Response {
        let scratch = self.scratch("http");
        let body_in = scratch.join("request");
        let body_out = scratch.join("response");
        let headers_out = scratch.join("headers");
        let mut command = Command::new("curl");
        command
            .args(["-s", "-k", "-X", method, "-o"])
            .arg(&body_out)
            .arg("-D")
            .arg(&headers_out)
            .args(["-w", "%{http_code}"]);
        if method == "HEAD" {
            command.arg("-I");
        }
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some(body) = body {
            std::fs::write(&body_in, body).expect("write request body");
            command
                .arg("--data-binary")
                .arg(format!("@{}", body_in.display()));
        }
        command.arg(self.url(path));
        let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run curl");
        let status = assert_success(&out, "curl").trim().parse().unwrap_or(0);
        let response = Response {
            status,
            headers: std::fs::read_to_string(&headers_out)
                .unwrap_or_default()
                .to_lowercase(),
            body: std::fs::read_to_string(&body_out).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&body_out);
        response
    }

    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root().join("blobs/sha256").join(&hex[..2]).join(hex)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    /// Lowercased, as HTTP header names are case-insensitive.
    headers: String,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    }

    fn error_code(&self) -> String {
        let value: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        value["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest_of(data), "size": data.len() })
}

/// An OCI image layout at `dir` holding busybox as one uncompressed layer,
/// tagged `v1`.
fn make_busybox_layout(dir: &Path) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("create work dir");
    let layer = std::fs::read(make_busybox_rootfs_tar(&work)).expect("read rootfs tar");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": [digest_of(&layer)] },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    })
    .to_string()
    .into_bytes();
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create layout");
    for blob in [&layer, &config, &manifest] {
        let digest = digest_of(blob);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), blob).expect("write blob");
    }
    let mut entry = descriptor(OCI_MANIFEST, &manifest);
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": "v1" });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [entry] });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");
    std::fs::remove_dir_all(&work).expect("remove work dir");
}

fn skopeo(args: &[&str]) -> Output {
    let mut command = Command::new("skopeo");
    command.arg("--insecure-policy").args(args);
    output_with_timeout(&mut command, CLI_TIMEOUT).expect("run skopeo")
}

#[test]
fn skopeo_pushes_inspects_lists_pulls_and_deletes() {
    let registry = Registry::start(&[]);
    let scratch = registry.scratch("skopeo");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());
    let image = format!("docker://{}/x/y", registry.host());
    for tag in ["v1", "v2"] {
        let out = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &layout,
            &format!("{image}:{tag}"),
        ]);
        assert_success(&out, "skopeo copy to the registry");
    }

    // skopeo gzips the layer on the way, so the pushed digest is the registry's.
    let head = registry.http("HEAD", "/v2/x/y/manifests/v1", &[], None);
    assert_eq!(head.status, 200, "{head:?}");
    let digest = head
        .header("docker-content-digest")
        .expect("manifest digest");
    // Tagged with its digest, as registry:2 does.
    assert_eq!(
        head.header("etag"),
        Some(format!("\"{digest}\"")),
        "{head:?}"
    );
    let stored = std::fs::read(registry.blob_file(&digest)).expect("stored manifest");
    assert_eq!(
        digest_of(&stored),
        digest,
        "stored manifest does not match its digest"
    );

    let out = skopeo(&["inspect", "--tls-verify=false", &format!("{image}:v1")]);
    let inspect: serde_json::Value =
        serde_json::from_str(&assert_success(&out, "skopeo inspect")).expect("inspect JSON");
    assert_eq!(inspect["Digest"], digest.as_str(), "{inspect}");
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspect}"
    );

    let out = skopeo(&["list-tags", "--tls-verify=false", &image]);
    let tags: serde_json::Value =
        serde_json::from_str(&assert_success(&out, "skopeo list-tags")).expect("tags JSON");
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));

    let pulled = scratch.join("pulled");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("{image}:v2"),
        &format!("dir:{}", pulled.display()),
    ]);
    assert_success(&out, "skopeo copy from the registry");
    let manifest = std::fs::read(pulled.join("manifest.json")).expect("pulled manifest");
    assert_eq!(digest_of(&manifest), digest, "pulled manifest differs");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let data = std::fs::read(pulled.join(layer.trim_start_matches("sha256:"))).expect("layer");
    assert_eq!(digest_of(&data), layer, "pulled layer differs");
    assert_eq!(
        std::fs::read(registry.blob_file(layer)).ok(),
        Some(data),
        "layer differs from the stored one"
    );

    let out = skopeo(&["delete", "--tls-verify=false", &format!("{image}@{digest}")]);
    assert_success(&out, "skopeo delete");
    let out = skopeo(&["inspect", "--tls-verify=false", &format!("{image}:v1")]);
    assert!(
        !out.status.success(),
        "deleted image still inspects: {}",
        describe(&out)
    );
    let out = skopeo(&["list-tags", "--tls-verify=false", &image]);
    let tags = assert_success(&out, "skopeo list-tags after delete");
    assert!(!tags.contains("v1"), "tags after delete: {tags}");
}

#[test]
fn dockerd_pushes_and_pulls_back() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dockerd needs root");
        return;
    }
    let registry = Registry::start(&[]);
    let dockerd = Dockerd::builder()
        .arg(format!("--insecure-registry={}", registry.host()))
        .start();
    let scratch = registry.scratch("dockerd");
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{}/library/busybox:1", registry.host());
    dockerd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    let pushed = dockerd.docker_ok(&["push", &image]);
    let out = registry.http("GET", "/v2/library/busybox/tags/list", &[], None);
    assert_eq!(out.status, 200, "{out:?}");
    assert!(out.body.contains("\"1\""), "{out:?}\npush said: {pushed}");

    dockerd.docker_ok(&["rmi", &image]);
    let out = dockerd.docker(&["image", "inspect", &image]);
    assert!(
        !out.status.success(),
        "image left after rmi: {}",
        text(&out.stdout)
    );
    dockerd.docker_ok(&["pull", &image]);
    let digests = dockerd.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    let manifest = registry.http("HEAD", "/v2/library/busybox/manifests/1", &[], None);
    let digest = manifest
        .header("docker-content-digest")
        .expect("digest header");
    assert!(
        digests.contains(&digest),
        "pulled {digests}, registry has {digest}"
    );
}

/// A bcrypt htpasswd entry made with the host's crypt(3) (libxcrypt), which
/// knows `$2b$`, so the test needs neither apache2-utils nor a new crate.
fn htpasswd_entry(user: &str, password: &str) -> String {
    let script = "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
    let mut command = Command::new("/usr/bin/python3");
    command.args(["-W", "ignore", "-c", script, password]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run python3");
    let hash = assert_success(&out, "python3 crypt").trim().to_owned();
    assert!(hash.starts_with("$2b$"), "not a bcrypt hash: {hash}");
    format!("{user}:{hash}\n")
}

#[test]
fn htpasswd_guards_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_entry("user", "s3cret")).expect("write htpasswd");
    let registry = Registry::start(&["--htpasswd", &htpasswd.to_string_lossy()]);

    let out = registry.http("GET", "/v2/", &[], None);
    assert_eq!(out.status, 401, "{out:?}");
    assert_eq!(out.error_code(), "UNAUTHORIZED");
    let challenge = out.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("basic realm="), "{out:?}");
    let out = registry.http(
        "GET",
        "/v2/",
        &["Authorization: Basic dXNlcjpzM2NyZXQ="],
        None,
    );
    assert_eq!(out.status, 200, "{out:?}");

    let scratch = registry.scratch("auth");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "user:wrong",
        &layout,
        &format!("docker://{}/z/w:v1", registry.host()),
    ]);
    assert!(
        !out.status.success(),
        "push with a wrong password: {}",
        describe(&out)
    );
    assert!(
        !registry.root().join("repositories/z").exists(),
        "stored without auth"
    );

    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "user:s3cret",
        &layout,
        &format!("docker://{}/x/y:v1", registry.host()),
    ]);
    assert_success(&out, "skopeo copy with credentials");
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        "user:s3cret",
        &format!("docker://{}/x/y", registry.host()),
    ]);
    assert!(assert_success(&out, "skopeo list-tags").contains("v1"));
}

#[test]
fn tls_serves_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let out = output_with_timeout(&mut openssl, CLI_TIMEOUT).expect("run openssl");
    assert_success(&out, "openssl req");
    let registry = Registry::start(&[
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
    ]);
    let mut curl = Command::new("curl");
    curl.args(["-s", "-i", "--cacert"])
        .arg(&cert)
        .arg(registry.url("/v2/"));
    let out = output_with_timeout(&mut curl, CLI_TIMEOUT).expect("run curl");
    let response = assert_success(&out, "curl over TLS").to_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(
        response.contains("docker-distribution-api-version: registry/2.0"),
        "{response}"
    );
}

/// Pushes `data` as a blob of `repo` in one POST.
fn push_blob(registry: &Registry, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
    let out = registry.http(
        "POST",
        &path,
        &["Content-Type: application/octet-stream"],
        Some(data),
    );
    assert_eq!(out.status, 201, "{out:?}");
    digest
}

fn put_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    manifest: &serde_json::Value,
) -> Response {
    let content_type = format!("Content-Type: {OCI_MANIFEST}");
    let body = manifest.to_string();
    registry.http(
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[&content_type],
        Some(body.as_bytes()),
    )
}

#[test]
fn protocol_corners_follow_the_spec() {
    let registry = Registry::start(&[]);
    let base = registry.http("GET", "/v2/", &[], None);
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    let bad = registry.http("GET", "/v2/Bad/Name/tags/list", &[], None);
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "NAME_INVALID"),
        "{bad:?}"
    );

    // Chunked upload: a chunk that does not start where the upload is → 416;
    // the right one → 202 with the new Range; a wrong digest at the end → 400
    // DIGEST_INVALID and nothing stored.
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    assert_eq!(start.status, 202, "{start:?}");
    let location = start.header("location").expect("upload location");
    assert!(start.header("docker-upload-uuid").is_some(), "{start:?}");
    let chunk = registry.http(
        "PATCH",
        &location,
        &[
            "Content-Range: 5-9",
            "Content-Type: application/octet-stream",
        ],
        Some(b"world"),
    );
    assert_eq!(chunk.status, 416, "{chunk:?}");
    let chunk = registry.http(
        "PATCH",
        &location,
        &[
            "Content-Range: 0-4",
            "Content-Type: application/octet-stream",
        ],
        Some(b"hello"),
    );
    assert_eq!(chunk.status, 202, "{chunk:?}");
    assert_eq!(chunk.header("range").as_deref(), Some("0-4"));
    let status = registry.http("GET", &location, &[], None);
    assert_eq!(
        (status.status, status.header("range").as_deref()),
        (204, Some("0-4"))
    );
    let wrong = digest_of(b"something else");
    let finish = registry.http(
        "PUT",
        &format!("{location}?digest={wrong}"),
        &["Content-Type: application/octet-stream"],
        Some(b""),
    );
    assert_eq!(
        (finish.status, finish.error_code().as_str()),
        (400, "DIGEST_INVALID"),
        "{finish:?}"
    );
    assert!(!registry.blob_file(&wrong).exists());
    assert!(
        !registry.blob_file(&digest_of(b"hello")).exists(),
        "unverified blob committed"
    );
    let missing = registry.http(
        "HEAD",
        &format!("/v2/p/q/blobs/{}", digest_of(b"hello")),
        &[],
        None,
    );
    assert_eq!(missing.status, 404);
    let leftovers = std::fs::read_dir(registry.root().join("uploads"))
        .expect("uploads")
        .count();
    assert_eq!(leftovers, 0, "ingest files left behind");

    // A finished chunked upload is served with its digest and length.
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    registry.http(
        "PATCH",
        &location,
        &["Content-Type: application/octet-stream"],
        Some(b"hel"),
    );
    let digest = digest_of(b"hello");
    let finish = registry.http(
        "PUT",
        &format!("{location}?digest={digest}"),
        &["Content-Type: application/octet-stream"],
        Some(b"lo"),
    );
    assert_eq!(finish.status, 201, "{finish:?}");
    let head = registry.http("HEAD", &format!("/v2/p/q/blobs/{digest}"), &[], None);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("docker-content-digest"), Some(digest.clone()));
    assert_eq!(head.header("content-length").as_deref(), Some("5"));

    let part = registry.http(
        "GET",
        &format!("/v2/p/q/blobs/{digest}"),
        &["Range: bytes=1-3"],
        None,
    );
    assert_eq!((part.status, part.body.as_str()), (206, "ell"), "{part:?}");
    assert_eq!(part.header("content-range").as_deref(), Some("bytes 1-3/5"));

    // A cancelled upload is gone, with its file.
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    registry.http(
        "PATCH",
        &location,
        &["Content-Type: application/octet-stream"],
        Some(b"abc"),
    );
    let cancel = registry.http("DELETE", &location, &[], None);
    assert_eq!(cancel.status, 204, "{cancel:?}");
    let status = registry.http("GET", &location, &[], None);
    assert_eq!(
        (status.status, status.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    let leftovers = std::fs::read_dir(registry.root().join("uploads"))
        .expect("uploads")
        .count();
    assert_eq!(leftovers, 0, "cancelled upload left its file");

    // Blobs bigger than any in-memory body limit stream through, in one
    // request and in chunks.
    let big: Vec<u8> = (0..5u32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let big_digest = push_blob(&registry, "p/q", &big);
    let stored = std::fs::read(registry.blob_file(&big_digest)).expect("big blob");
    assert!(stored == big, "big blob stored differently");
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    let (first, second) = big.split_at(3 * 1024 * 1024);
    let range = format!("Content-Range: 0-{}", first.len() - 1);
    let chunk = registry.http("PATCH", &location, &[&range], Some(first));
    assert_eq!(chunk.status, 202, "{chunk:?}");
    let finish = registry.http(
        "PUT",
        &format!("{location}?digest={big_digest}"),
        &["Content-Type: application/octet-stream"],
        Some(second),
    );
    assert_eq!(finish.status, 201, "{finish:?}");

    // Cross-repository mount of a blob the source repository has.
    let mount = registry.http(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={digest}&from=p/q"),
        &[],
        None,
    );
    assert_eq!(mount.status, 201, "{mount:?}");
    let unknown = digest_of(b"nowhere");
    let fallback = registry.http(
        "POST",
        &format!("/v2/other/blobs/uploads/?mount={unknown}&from=p/q"),
        &[],
        None,
    );
    assert_eq!(
        fallback.status, 202,
        "a mount of an unknown blob starts an upload: {fallback:?}"
    );
    let get = registry.http("GET", &format!("/v2/other/blobs/{digest}"), &[], None);
    assert_eq!((get.status, get.body.as_str()), (200, "hello"));

    // A manifest naming a blob the repository lacks is refused.
    let config = push_blob(&registry, "p/q", b"{}");
    let missing_layer = digest_of(b"not pushed");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing_layer, "size": 10 }],
    });
    let out = put_manifest(&registry, "p/q", "broken", &manifest);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN"),
        "{out:?}"
    );

    // Tags, paginated with a Link to the next page.
    let image = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 5 }],
    });
    let mut image_digest = String::new();
    for tag in ["a", "b", "c"] {
        let out = put_manifest(&registry, "p/q", tag, &image);
        assert_eq!(out.status, 201, "{out:?}");
        image_digest = out
            .header("docker-content-digest")
            .expect("manifest digest");
    }
    assert_eq!(image_digest, digest_of(image.to_string().as_bytes()));
    let page = registry.http("GET", "/v2/p/q/tags/list?n=1", &[], None);
    assert_eq!(page.status, 200, "{page:?}");
    let tags: serde_json::Value = serde_json::from_str(&page.body).expect("tags JSON");
    assert_eq!(tags["tags"], serde_json::json!(["a"]));
    let link = page.header("link").expect("Link header");
    assert_eq!(link, "</v2/p/q/tags/list?n=1&last=a>; rel=\"next\"");
    let next = registry.http("GET", "/v2/p/q/tags/list?n=1&last=a", &[], None);
    assert!(next.body.contains("\"b\""), "{next:?}");
    let rest = registry.http("GET", "/v2/p/q/tags/list?n=5&last=b", &[], None);
    assert!(
        rest.header("link").is_none() && rest.body.contains("\"c\""),
        "{rest:?}"
    );
    let manifest = registry.http("GET", "/v2/p/q/manifests/b", &[], None);
    assert_eq!(
        manifest.header("content-type").as_deref(),
        Some(OCI_MANIFEST)
    );
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image_digest.clone())
    );

    let catalog = registry.http("GET", "/v2/_catalog?n=1", &[], None);
    assert!(catalog.body.contains("\"other\""), "{catalog:?}");
    assert!(catalog.header("link").is_some(), "{catalog:?}");

    // Referrers: artifacts whose subject is the image, filtered by artifactType.
    let empty = push_blob(&registry, "p/q", b"{}");
    for artifact_type in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ] {
        let artifact = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2 },
            "layers": [],
            "subject": { "mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.to_string().len() },
        });
        let digest = digest_of(artifact.to_string().as_bytes());
        let out = put_manifest(&registry, "p/q", &digest, &artifact);
        assert_eq!(out.status, 201, "{out:?}");
        assert_eq!(out.header("oci-subject"), Some(image_digest.clone()));
    }
    let all = registry.http(
        "GET",
        &format!("/v2/p/q/referrers/{image_digest}"),
        &[],
        None,
    );
    let index: serde_json::Value = serde_json::from_str(&all.body).expect("referrers JSON");
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{all:?}"
    );
    assert!(all.header("oci-filters-applied").is_none());
    let sboms = registry.http(
        "GET",
        &format!("/v2/p/q/referrers/{image_digest}?artifactType=application/vnd.example.sbom"),
        &[],
        None,
    );
    assert_eq!(
        sboms.header("content-type").as_deref(),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(
        sboms.header("oci-filters-applied").as_deref(),
        Some("artifacttype")
    );
    let index: serde_json::Value = serde_json::from_str(&sboms.body).expect("referrers JSON");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{sboms:?}");
    assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sbom");

    // Deleting by digest removes the manifest and its tags.
    let out = registry.http(
        "DELETE",
        &format!("/v2/p/q/manifests/{image_digest}"),
        &[],
        None,
    );
    assert_eq!(out.status, 202, "{out:?}");
    let out = registry.http("GET", "/v2/p/q/manifests/a", &[], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
}

/// The upload session directories in the registry's root.
fn upload_dirs(registry: &Registry) -> Vec<PathBuf> {
    std::fs::read_dir(registry.root().join("uploads"))
        .expect("uploads dir")
        .flatten()
        .map(|entry| entry.path())
        .collect()
}

#[test]
fn an_upload_survives_a_crash_and_resumes_where_it_stopped() {
    let mut registry = Registry::start(&[]);
    let data = b"all of the blob, in two chunks";
    let digest = digest_of(data);
    let start = registry.http("POST", "/v2/c/d/blobs/uploads/", &[], None);
    assert_eq!(start.status, 202, "{start:?}");
    let location = start.header("location").expect("upload location");
    let chunk = registry.http(
        "PATCH",
        &location,
        &[
            "Content-Type: application/octet-stream",
            "Content-Range: 0-5",
        ],
        Some(&data[..6]),
    );
    assert_eq!(chunk.status, 202, "{chunk:?}");

    registry.crash_and_restart();
    // Nothing of the unfinished blob is visible.
    let head = registry.http("HEAD", &format!("/v2/c/d/blobs/{digest}"), &[], None);
    assert_eq!(head.status, 404, "{head:?}");
    assert!(!registry.blob_file(&digest).exists());
    // The session is still there, and says how far it got.
    let status = registry.http("GET", &location, &[], None);
    assert_eq!(
        (status.status, status.header("range").as_deref()),
        (204, Some("0-5")),
        "{status:?}\n{}",
        registry.log()
    );
    // Another repository cannot use it.
    let elsewhere = registry.http(
        "GET",
        &location.replace("/v2/c/d/", "/v2/c/other/"),
        &[],
        None,
    );
    assert_eq!(elsewhere.status, 404, "{elsewhere:?}");
    let rest = format!("Content-Range: 6-{}", data.len() - 1);
    let chunk = registry.http(
        "PATCH",
        &location,
        &["Content-Type: application/octet-stream", &rest],
        Some(&data[6..]),
    );
    assert_eq!(
        (chunk.status, chunk.header("range")),
        (202, Some(format!("0-{}", data.len() - 1))),
        "{chunk:?}"
    );
    let finish = registry.http("PUT", &format!("{location}?digest={digest}"), &[], None);
    assert_eq!(finish.status, 201, "{finish:?}\n{}", registry.log());
    assert_eq!(finish.header("docker-content-digest"), Some(digest.clone()));
    let get = registry.http("GET", &format!("/v2/c/d/blobs/{digest}"), &[], None);
    assert_eq!((get.status, get.body.as_bytes()), (200, &data[..]));
    assert_eq!(upload_dirs(&registry), Vec::<PathBuf>::new());

    // A cancelled upload leaves nothing behind, before or after a restart.
    for crash in [false, true] {
        let start = registry.http("POST", "/v2/c/d/blobs/uploads/", &[], None);
        let location = start.header("location").expect("upload location");
        let chunk = registry.http("PATCH", &location, &[], Some(b"abandoned"));
        assert_eq!(chunk.status, 202, "{chunk:?}");
        assert_eq!(upload_dirs(&registry).len(), 1);
        if crash {
            registry.crash_and_restart();
        }
        let cancel = registry.http("DELETE", &location, &[], None);
        assert_eq!(cancel.status, 204, "{cancel:?}");
        assert_eq!(upload_dirs(&registry), Vec::<PathBuf>::new());
        let status = registry.http("GET", &location, &[], None);
        assert_eq!(
            (status.status, status.error_code().as_str()),
            (404, "BLOB_UPLOAD_UNKNOWN")
        );
    }
}

#[test]
fn idle_upload_sessions_are_purged_even_after_a_restart() {
    let mut registry = Registry::start(&["--upload-purge-after", "3"]);
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    let chunk = registry.http("PATCH", &location, &[], Some(b"never finished"));
    assert_eq!(chunk.status, 202, "{chunk:?}");
    registry.crash_and_restart();
    let started = Instant::now();
    while !upload_dirs(&registry).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "idle upload not purged: {}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = registry.http("GET", &location, &[], None);
    assert_eq!(
        (status.status, status.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );
    // A session in use is not idle.
    let start = registry.http("POST", "/v2/p/q/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        let chunk = registry.http("PATCH", &location, &[], Some(b"x"));
        assert_eq!(chunk.status, 202, "{chunk:?}");
    }
}

/// `berth registry serve` with exactly `args`, its output collected if it
/// exits within a few seconds (bad configuration); None when it is still
/// serving after them (then it was killed).
fn serve_briefly(args: &[&str]) -> Option<Output> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(workspace_binary("berth"))
        .args(["registry", "serve"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(std::fs::File::create(&err).expect("err"))
        .spawn()
        .expect("spawn berth registry serve");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Output {
                status,
                stdout: std::fs::read(&out).unwrap_or_default(),
                stderr: std::fs::read(&err).unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_config_file_sets_what_flags_do_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_port = free_loopback_port();
    let config = dir.path().join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "# berth registry serve --config\naddr: 127.0.0.1:{file_port}\nroot: from-file\n\
             log-level: warn\nmax-manifest-bytes: 600\ngc-interval: 1h\ngc-grace: 30m\n\
             upload-purge-after: 2d\n"
        ),
    )
    .expect("write config");
    let config_arg = config.to_str().expect("utf-8 path");
    // Flags (--addr, --root from the guard) win over the file's; the rest is the file's.
    let registry = Registry::start(&["--config", config_arg]);
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, file_port)).is_err(),
        "listening on the file's address despite --addr"
    );
    let blob = push_blob(&registry, "cfg/a", b"{}");
    assert!(registry.blob_file(&blob).exists(), "--root not used");
    assert!(!dir.path().join("from-file").exists());
    let manifest = |padding: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": blob, "size": 2 },
            "layers": [],
            "annotations": { "padding": "x".repeat(padding) },
        })
    };
    let small = put_manifest(&registry, "cfg/a", "small", &manifest(10));
    assert_eq!(small.status, 201, "{small:?}");
    let big = put_manifest(&registry, "cfg/a", "big", &manifest(1000));
    assert_eq!(
        (big.status, big.error_code().as_str()),
        (413, "MANIFEST_INVALID"),
        "max-manifest-bytes of the file not applied: {big:?}"
    );
    drop(registry);

    // The file alone: its address, and its root (relative to the file).
    let output = serve_briefly(&["--config", config_arg]);
    assert!(
        output.is_none(),
        "exited: {}",
        output.map(|o| describe(&o)).unwrap_or_default()
    );
    assert!(
        dir.path().join("from-file/blobs/sha256").is_dir(),
        "file's root not used"
    );

    // Unknown keys and bad values stop it at start, naming the key.
    for (text, key) in [
        ("gc-intervall: 5\n", "gc-intervall"),
        ("gc-interval: soon\n", "gc-interval"),
        ("addr: localhost\n", "addr"),
        ("gc-delete-untagged: maybe\n", "gc-delete-untagged"),
        ("log-level: loud\n", "log-level"),
        ("max-manifest-bytes: -1\n", "max-manifest-bytes"),
        ("[1, 2]\n", "a mapping"),
        ("root: x\ngc-delete-untagged: true\n", "gc-interval"),
        ("tls-cert: c.pem\nroot: x\n", "tls-key"),
    ] {
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, text).expect("write config");
        let out = serve_briefly(&[
            "--config",
            bad.to_str().expect("utf-8"),
            "--root",
            dir.path().join("r").to_str().expect("utf-8"),
        ])
        .unwrap_or_else(|| panic!("{text:?} accepted"));
        assert!(!out.status.success(), "{text:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{text:?}: {stderr}");
    }
    let out = serve_briefly(&["--config", "/nonexistent/registry.yml", "--root", "/tmp/x"])
        .expect("a missing file accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/registry.yml"));
}

/// `berth registry gc` with `args`.
fn offline_gc(args: &[&str]) -> Output {
    let mut command = Command::new(workspace_binary("berth"));
    command.args(["registry", "gc"]).args(args);
    output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth registry gc")
}

#[test]
fn offline_gc_removes_what_nothing_refers_to_and_refuses_a_served_root() {
    let mut registry = Registry::start(&[]);
    let root = registry.root();
    let root_arg = root.to_str().expect("utf-8 root").to_owned();
    let config = push_blob(&registry, "o/img", b"{}");
    let layer = push_blob(&registry, "o/img", b"a layer of the tagged image");
    let orphan = push_blob(&registry, "o/img", b"nobody refers to me");
    let untagged_layer = push_blob(&registry, "o/img", b"only an untagged manifest has me");
    let image = |layer: &str, size: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": size }],
        })
    };
    let tagged = image(&layer, 27);
    assert_eq!(put_manifest(&registry, "o/img", "v1", &tagged).status, 201);
    let untagged = image(&untagged_layer, 32);
    let untagged_digest = digest_of(untagged.to_string().as_bytes());
    let out = put_manifest(&registry, "o/img", &untagged_digest, &untagged);
    assert_eq!(out.status, 201, "{out:?}");

    let out = offline_gc(&["--root", &root_arg]);
    assert!(
        !out.status.success(),
        "gc ran under a server: {}",
        describe(&out)
    );
    assert!(text(&out.stderr).contains("in use"), "{}", describe(&out));
    assert!(registry.blob_file(&orphan).exists());

    registry.stop();
    // Within the grace period, nothing goes.
    let out = offline_gc(&["--root", &root_arg, "--grace", "1h", "--delete-untagged"]);
    let printed = assert_success(&out, "berth registry gc --grace 1h");
    assert!(
        printed.contains("0 blobs and 0 manifests eligible for deletion"),
        "{printed}"
    );
    // A dry run says what would go and removes nothing.
    let out = offline_gc(&["--root", &root_arg, "--dry-run", "--delete-untagged"]);
    let printed = assert_success(&out, "berth registry gc --dry-run");
    let untagged_size = untagged.to_string().len();
    let freed = 19 + 32 + untagged_size;
    for expected in [
        format!("manifest eligible for deletion: o/img@{untagged_digest}"),
        format!("blob eligible for deletion: {orphan} (19 bytes)"),
        format!("blob eligible for deletion: {untagged_layer} (32 bytes)"),
        format!("blob eligible for deletion: {untagged_digest} ({untagged_size} bytes)"),
        "3 blobs marked, 3 blobs and 1 manifests eligible for deletion".to_owned(),
        format!("{freed} bytes would be freed"),
    ] {
        assert!(
            printed.contains(&expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    assert!(!printed.contains(&layer), "{printed}");
    assert!(
        registry.blob_file(&orphan).exists(),
        "dry run removed a blob"
    );
    assert!(registry.blob_file(&untagged_digest).exists());
    // Without --delete-untagged the untagged image stays.
    let out = offline_gc(&["--root", &root_arg]);
    let printed = assert_success(&out, "berth registry gc");
    assert!(
        printed.contains("5 blobs marked, 1 blobs and 0 manifests eligible for deletion"),
        "{printed}"
    );
    assert!(printed.contains("19 bytes freed"), "{printed}");
    assert!(!registry.blob_file(&orphan).exists());
    assert!(registry.blob_file(&untagged_layer).exists());
    let out = offline_gc(&["--root", &root_arg, "--delete-untagged"]);
    let printed = assert_success(&out, "berth registry gc --delete-untagged");
    assert!(
        printed.contains(&format!("{} bytes freed", 32 + untagged_size)),
        "{printed}"
    );
    for gone in [&untagged_layer, &untagged_digest] {
        assert!(!registry.blob_file(gone).exists(), "{gone} kept");
    }

    // Served again: the tagged image is whole, the rest is gone.
    registry.restart();
    let get = registry.http("GET", "/v2/o/img/manifests/v1", &[], None);
    assert_eq!(get.status, 200, "{get:?}");
    for blob in [&config, &layer] {
        let head = registry.http("HEAD", &format!("/v2/o/img/blobs/{blob}"), &[], None);
        assert_eq!(head.status, 200, "{blob}: {head:?}");
    }
    for blob in [&orphan, &untagged_layer] {
        let head = registry.http("HEAD", &format!("/v2/o/img/blobs/{blob}"), &[], None);
        assert_eq!(head.status, 404, "{blob}: {head:?}");
    }
    let get = registry.http(
        "GET",
        &format!("/v2/o/img/manifests/{untagged_digest}"),
        &[],
        None,
    );
    assert_eq!(get.status, 404, "{get:?}");
    let out = offline_gc(&["--root", "/nonexistent/registry"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/nonexistent/registry"),
        "{}",
        describe(&out)
    );
}

/// What token mode needs, in `dir`: a P-256 signing key with a certificate
/// of it (for registries that trust the key), an htpasswd file with `alice`
/// (everything everywhere) and `bob` (pull on team/*, pull and push on
/// bob/*), and a config that lets anyone pull public/*.
struct TokenFiles {
    config: PathBuf,
    cert: PathBuf,
    htpasswd: PathBuf,
}

const SERVICE: &str = "berth-test";

/// berthd beside berth's registry with token auth (files in the returned
/// dir); `None`, with a line saying why, when not root.
fn berthd_and_token_registry() -> Option<(tempfile::TempDir, Registry, Berthd)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: berthd needs root");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &[]);
    let registry = Registry::start_with_tokens(&files);
    Some((dir, registry, Berthd::start()))
}

fn token_files(dir: &Path, other_services: &[&str]) -> TokenFiles {
    let (key, cert) = (dir.join("token-key.pem"), dir.join("token-cert.pem"));
    let mut openssl = Command::new("openssl");
    openssl
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=berth token signer", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let out = output_with_timeout(&mut openssl, CLI_TIMEOUT).expect("run openssl");
    assert_success(&out, "openssl req");
    let htpasswd = dir.join("htpasswd");
    let users = htpasswd_entry("alice", "alice-pw") + &htpasswd_entry("bob", "bob-pw");
    std::fs::write(&htpasswd, users).expect("write htpasswd");
    let config = dir.join("token.json");
    let body = serde_json::json!({
        "service": SERVICE,
        "issuer": "berth-test-issuer",
        "key": key,
        "expiration": 600,
        "other_services": other_services,
        "access": [
            { "account": "alice", "repository": "*", "actions": ["*"] },
            { "account": "bob", "repository": "team/*", "actions": ["pull"] },
            { "account": "*", "repository": "${account}/*", "actions": ["pull", "push"] },
            { "anonymous": true, "repository": "public/*", "actions": ["pull"] },
        ],
    });
    std::fs::write(&config, body.to_string()).expect("write token config");
    TokenFiles {
        config,
        cert,
        htpasswd,
    }
}

impl Registry {
    /// `berth registry serve` in token mode with `files`.
    fn start_with_tokens(files: &TokenFiles) -> Registry {
        Registry::start(&[
            "--htpasswd",
            &files.htpasswd.to_string_lossy(),
            "--token-config",
            &files.config.to_string_lossy(),
        ])
    }

    /// The token endpoint's answer for `query`, with `creds` (user:password).
    fn token(&self, creds: Option<&str>, query: &str) -> (u16, serde_json::Value) {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-w", "\n%{http_code}"]);
        if let Some(creds) = creds {
            curl.args(["-u", creds]);
        }
        curl.arg(self.url(&format!("/auth/token?{query}")));
        let out = output_with_timeout(&mut curl, CLI_TIMEOUT).expect("run curl");
        let out = assert_success(&out, "curl token");
        let (body, status) = out.rsplit_once('\n').unwrap_or_default();
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    /// The token endpoint's answer to an OAuth2 POST of `form`.
    fn token_post(&self, form: &str) -> (u16, serde_json::Value) {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-w", "\n%{http_code}", "--data", form]);
        curl.arg(self.url("/auth/token"));
        let out = output_with_timeout(&mut curl, CLI_TIMEOUT).expect("run curl");
        let out = assert_success(&out, "curl token");
        let (body, status) = out.rsplit_once('\n').unwrap_or_default();
        (
            status.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or_default(),
        )
    }

    /// A bearer token for `scope` (service: this registry's).
    fn bearer(&self, creds: Option<&str>, scope: &str) -> String {
        let (status, body) = self.token(creds, &format!("service={SERVICE}&scope={scope}"));
        assert_eq!(status, 200, "{body}");
        format!(
            "Authorization: Bearer {}",
            body["token"].as_str().expect("token")
        )
    }
}

#[test]
fn token_auth_scopes_every_request_for_skopeo_and_curl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &["elsewhere"]);
    let registry = Registry::start_with_tokens(&files);
    let realm = format!("bearer realm=\"{}\"", registry.url("/auth/token"));

    // The challenge names the realm, the service and the scope needed.
    let out = registry.http("GET", "/v2/", &[], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (401, "UNAUTHORIZED")
    );
    let challenge = out.header("www-authenticate").unwrap_or_default();
    assert_eq!(challenge, format!("{realm},service=\"{SERVICE}\""));
    let out = registry.http("GET", "/v2/team/app/tags/list", &[], None);
    let challenge = out.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.ends_with("scope=\"repository:team/app:pull\""),
        "{out:?}"
    );

    let scratch = registry.scratch("token");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());
    let image = |repo: &str| format!("docker://{}/{repo}", registry.host());
    let push = |creds: &str, repo: &str| {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &layout,
            &image(repo),
        ])
    };
    assert_success(&push("alice:alice-pw", "team/app:v1"), "alice pushes");
    assert_success(&push("alice:alice-pw", "public/app:v1"), "alice pushes");
    assert_success(&push("bob:bob-pw", "bob/own:v1"), "bob pushes to bob/*");
    let out = push("bob:bob-pw", "team/app:v2");
    assert!(!out.status.success(), "bob pushed to team/*");
    assert!(
        text(&out.stderr).contains("denied"),
        "bob's refusal: {}",
        describe(&out)
    );
    let out = push("alice:wrong", "team/app:v3");
    assert!(!out.status.success(), "wrong password pushed");

    let inspect = |creds: Option<&str>, repo: &str| {
        let mut args = vec!["inspect", "--tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--creds", creds]);
        }
        let target = image(repo);
        args.push(&target);
        skopeo(&args)
    };
    assert_success(
        &inspect(None, "public/app:v1"),
        "anonymous pull of public/*",
    );
    assert_success(
        &inspect(Some("bob:bob-pw"), "team/app:v1"),
        "bob pulls team/*",
    );
    let out = inspect(None, "team/app:v1");
    assert!(!out.status.success(), "anonymous pulled team/*");
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        "alice:alice-pw",
        &image("team/app"),
    ]);
    let tags = assert_success(&out, "skopeo list-tags");
    assert!(
        tags.contains("v1") && !tags.contains("v2") && !tags.contains("v3"),
        "{tags}"
    );

    let digest = registry
        .http(
            "HEAD",
            "/v2/team/app/manifests/v1",
            &[&registry.bearer(Some("alice:alice-pw"), "repository:team/app:pull")],
            None,
        )
        .header("docker-content-digest")
        .expect("manifest digest");
    let by_digest = image(&format!("team/app@{digest}"));
    let out = skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        "bob:bob-pw",
        &by_digest,
    ]);
    assert!(!out.status.success(), "bob deleted: {}", describe(&out));
    let out = skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        "alice:alice-pw",
        &by_digest,
    ]);
    assert_success(&out, "alice deletes");

    // Tokens carry only what the rules grant.
    let (status, body) = registry.token(
        Some("bob:bob-pw"),
        &format!("service={SERVICE}&scope=repository:team/app:pull,push,delete&scope=repository:bob/x:push"),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token");
    let claims = jwt_part(token, 1);
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    assert_eq!(claims["access"][1]["actions"], serde_json::json!(["push"]));
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("bob"), Some(SERVICE))
    );
    let header = jwt_part(token, 0);
    assert_eq!(header["alg"], "ES256", "{header}");
    let (status, _) = registry.token(Some("bob:nope"), &format!("service={SERVICE}"));
    assert_eq!(status, 401);
    let (status, body) = registry.token(None, "service=nobody-knows");
    assert_eq!(status, 400, "{body}");

    // A valid token without the scope: 403 DENIED, with a challenge naming
    // the scope needed (RFC 6750's insufficient_scope).
    let bob_pull = registry.bearer(Some("bob:bob-pw"), "repository:team/app:pull,push");
    let out = registry.http("POST", "/v2/team/app/blobs/uploads/", &[&bob_pull], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (403, "DENIED"),
        "{out:?}"
    );
    let anonymous = registry.bearer(None, "repository:public/app:pull");
    let out = registry.http("POST", "/v2/public/app/blobs/uploads/", &[&anonymous], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (403, "DENIED"),
        "{out:?}"
    );
    let challenge = out.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("scope=\"repository:public/app:pull,push\"")
            && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let out = registry.http("GET", "/v2/public/app/tags/list", &[&anonymous], None);
    assert_eq!(out.status, 200, "{out:?}");

    // The catalog needs pull on every repository.
    let alice = registry.bearer(Some("alice:alice-pw"), "registry:catalog:*");
    let out = registry.http("GET", "/v2/_catalog", &[&alice], None);
    assert!(out.status == 200 && out.body.contains("bob/own"), "{out:?}");
    let bob = registry.bearer(Some("bob:bob-pw"), "registry:catalog:*");
    let out = registry.http("GET", "/v2/_catalog", &[&bob], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (403, "DENIED"),
        "{out:?}"
    );

    // Tokens for another service, altered, or from another key are refused.
    let (_, body) = registry.token(
        Some("alice:alice-pw"),
        "service=elsewhere&scope=repository:team/app:pull",
    );
    let elsewhere = format!(
        "Authorization: Bearer {}",
        body["token"].as_str().unwrap_or_default()
    );
    let good = registry.bearer(Some("alice:alice-pw"), "repository:team/app:pull");
    let mut altered = good.clone();
    altered.pop();
    altered.push(if good.ends_with('A') { 'B' } else { 'A' });
    for header in [&elsewhere, &altered] {
        let out = registry.http("GET", "/v2/team/app/tags/list", &[header], None);
        assert_eq!(out.status, 401, "{header}: {out:?}");
        let challenge = out.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    let out = registry.http("GET", "/v2/team/app/tags/list", &[&good], None);
    assert_eq!(out.status, 200, "{out:?}");
}

/// The JSON of a JWT's header (0) or claims (1).
fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).expect("JWT part");
    let mut command = Command::new("/usr/bin/python3");
    command.args([
        "-c",
        "import base64,sys; p=sys.argv[1]; print(base64.urlsafe_b64decode(p + '=' * (-len(p) % 4)).decode())",
        part,
    ]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run python3");
    serde_json::from_str(&assert_success(&out, "decode JWT")).expect("JWT JSON")
}

#[test]
fn dockerd_logs_in_with_a_token_and_pushes_and_pulls() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dockerd needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &[]);
    let registry = Registry::start_with_tokens(&files);
    let dockerd = Dockerd::builder()
        .arg(format!("--insecure-registry={}", registry.host()))
        .start();
    let host = registry.host();
    let out = dockerd.docker(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(
        !out.status.success(),
        "login with a wrong password: {}",
        describe(&out)
    );
    let login = dockerd.docker_ok(&["login", "-u", "alice", "-p", "alice-pw", &host]);
    assert!(login.contains("Login Succeeded"), "{login}");
    // dockerd asked for a refresh token (offline_token=true): the CLI keeps
    // it instead of the password, and the push and pull below get their
    // tokens with it (grant_type=refresh_token).
    let config_path = dockerd.dir().join("cli/config.json");
    let config_text = std::fs::read_to_string(&config_path).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(&config_text).expect("JSON");
    let identity = config["auths"][&host]["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken: {config}"));
    assert_eq!(jwt_part(identity, 1)["token_use"], "refresh");
    assert!(!config_text.contains("alice-pw"), "{config_text}");

    let scratch = registry.scratch("dockerd-token");
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{host}/public/busybox:1");
    dockerd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    dockerd.docker_ok(&["push", &image]);
    dockerd.docker_ok(&["rmi", &image]);
    dockerd.docker_ok(&["pull", &image]);

    // Signed out: public/* still pulls, nothing pushes.
    dockerd.docker_ok(&["logout", &host]);
    dockerd.docker_ok(&["rmi", &image]);
    dockerd.docker_ok(&["pull", &image]);
    let other = format!("{host}/public/other:1");
    dockerd.docker_ok(&["tag", &image, &other]);
    let out = dockerd.docker(&["push", &other]);
    assert!(!out.status.success(), "anonymous push: {}", describe(&out));

    // bob may push only under bob/.
    dockerd.docker_ok(&["login", "-u", "bob", "-p", "bob-pw", &host]);
    let team = format!("{host}/team/busybox:1");
    dockerd.docker_ok(&["tag", &image, &team]);
    let out = dockerd.docker(&["push", &team]);
    assert!(
        !out.status.success(),
        "bob pushed to team/: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("denied"),
        "bob's refusal: {}",
        describe(&out)
    );
    let own = format!("{host}/bob/busybox:1");
    dockerd.docker_ok(&["tag", &image, &own]);
    dockerd.docker_ok(&["push", &own]);
}

#[test]
fn berth_issues_tokens_for_debian_docker_registry() {
    let distribution = Path::new("/usr/bin/docker-registry");
    if !nix::unistd::geteuid().is_root() || !distribution.exists() {
        eprintln!("skipped: needs root and {}", distribution.display());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &["distribution-test"]);
    let issuer = Registry::start_with_tokens(&files);

    // distribution trusts the certificate of berth's signing key.
    let port = free_loopback_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {}\n    service: distribution-test\n\
             \x20   issuer: berth-test-issuer\n    rootcertbundle: {}\n",
            dir.path().join("distribution").display(),
            issuer.url("/auth/token"),
            files.cert.display()
        ),
    )
    .expect("write config.yml");
    let log = std::fs::File::create(dir.path().join("distribution.log")).expect("create log");
    let child = Command::new(distribution)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .spawn()
        .expect("spawn docker-registry");
    let guard = ChildGuard(child);
    let host = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "docker-registry not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let distribution_log =
        || std::fs::read_to_string(dir.path().join("distribution.log")).unwrap_or_default();

    // skopeo, through berth's token endpoint.
    let scratch = issuer.scratch("distribution");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pw",
        &layout,
        &format!("docker://{host}/team/skopeo:v1"),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        distribution_log()
    );
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:bob-pw",
        &layout,
        &format!("docker://{host}/team/skopeo:v2"),
    ]);
    assert!(!out.status.success(), "bob pushed to team/ on distribution");

    // berthd: `docker login` checks the password through the token flow
    // (`POST /auth`), then push and pull use the saved credentials.
    let berthd = Berthd::start();
    let out = berthd.docker(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!out.status.success(), "{}", describe(&out));
    let out = berthd.docker(&["login", "-u", "alice", "-p", "alice-pw", &host]);
    assert!(
        out.status.success() && text(&out.stdout).contains("Login Succeeded"),
        "{}\n{}",
        describe(&out),
        berthd.log()
    );
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{host}/team/berthd:1");
    berthd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    let out = berthd.docker(&["push", &image]);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        distribution_log()
    );
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    let out = berthd.docker_ok(&["run", "--rm", &image, "/bin/echo", "via tokens"]);
    assert_eq!(out.trim(), "via tokens");
    // Another repository mounts the layer: the push token also asks to
    // pull from the repository the image came from.
    let copy = format!("{host}/team/copy:1");
    berthd.docker_ok(&["tag", &image, &copy]);
    let out = berthd.docker_ok(&["push", &copy]);
    assert!(
        out.contains("Mounted from team/berthd") && !out.contains(&format!("Mounted from {host}")),
        "{out}\n{}",
        distribution_log()
    );

    // And berthd against the issuer itself, a berth registry in token mode.
    let out = berthd.docker(&["login", "-u", "alice", "-p", "alice-pw", &issuer.host()]);
    assert!(out.status.success(), "{}\n{}", describe(&out), berthd.log());
    let on_issuer = format!("{}/team/berthd:1", issuer.host());
    berthd.docker_ok(&["tag", &image, &on_issuer]);
    let out = berthd.docker(&["push", &on_issuer]);
    assert!(out.status.success(), "{}\n{}", describe(&out), issuer.log());
    let copy = format!("{}/team/copy:1", issuer.host());
    berthd.docker_ok(&["tag", &image, &copy]);
    let out = berthd.docker_ok(&["push", &copy]);
    assert!(out.contains("Mounted from team/berthd"), "{out}");
    berthd.docker_ok(&["rmi", &on_issuer]);
    berthd.docker_ok(&["pull", &on_issuer]);
    drop(guard);
}

#[test]
fn the_token_endpoint_takes_oauth2_password_and_refresh_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &[]);
    let mut registry = Registry::start_with_tokens(&files);
    let scope = "repository%3Aalice%2Fapp%3Apull%2Cpush";
    let password = |password: &str, extra: &str| {
        registry.token_post(&format!(
            "grant_type=password&username=alice&password={password}&client_id=test&service={SERVICE}&scope={scope}{extra}"
        ))
    };
    let (status, body) = password("wrong", "&access_type=offline");
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{body}");
    // Without access_type=offline: no refresh token.
    let (status, body) = password("alice-pw", "");
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_null(), "{body}");
    let (status, body) = password("alice-pw", "&access_type=offline");
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access_token");
    assert_eq!(
        jwt_part(access, 1)["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert!(
        body["issued_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    assert_eq!(jwt_part(&refresh, 1)["sub"], "alice");

    // The refresh token gets tokens for other scopes, without the password.
    let (status, body) = registry.token_post(&format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=test&service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull"
    ));
    assert_eq!(status, 200, "{body}");
    let renewed = format!(
        "Authorization: Bearer {}",
        body["access_token"].as_str().expect("access_token")
    );
    let out = registry.http("GET", "/v2/team/app/tags/list", &[&renewed], None);
    assert_eq!(out.error_code(), "NAME_UNKNOWN", "{out:?}");
    // It is no access token itself.
    let out = registry.http(
        "GET",
        "/v2/",
        &[&format!("Authorization: Bearer {refresh}")],
        None,
    );
    assert_eq!(out.status, 401, "{out:?}");

    // Bad requests get 400, say what is wrong, and carry OAuth 2's error
    // code too.
    for (form, expected, oauth) in [
        (
            format!(
                "grant_type=refresh_token&refresh_token={access}&client_id=test&service={SERVICE}"
            ),
            "refresh_token is not valid",
            "invalid_grant",
        ),
        (
            format!("grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}"),
            "client_id is missing",
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&client_id=test".to_owned(),
            "unsupported grant_type",
            "unsupported_grant_type",
        ),
        (
            "client_id=test&username=alice".to_owned(),
            "grant_type is missing",
            "invalid_request",
        ),
    ] {
        let (status, body) = registry.token_post(&form);
        assert_eq!(status, 400, "{form}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{form}: {body}"
        );
        assert_eq!(body["error"], oauth, "{form}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{form}: {body}"
        );
    }
    // A GET with offline_token=true gets one too, but not anonymously.
    let (status, body) = registry.token(
        Some("bob:bob-pw"),
        &format!("service={SERVICE}&offline_token=true&client_id=test"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].as_str().is_some(), "{body}");
    let (_, body) = registry.token(None, &format!("service={SERVICE}&offline_token=true"));
    assert!(body["refresh_token"].is_null(), "{body}");

    // The signing key is kept, so refresh tokens outlive a restart, but not
    // a new password.
    let refresh_grant = format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id=test&service={SERVICE}"
    );
    registry.stop();
    registry.restart();
    let (status, body) = registry.token_post(&refresh_grant);
    assert_eq!(status, 200, "after a restart: {body}");
    let users = htpasswd_entry("alice", "new-pw") + &htpasswd_entry("bob", "bob-pw");
    std::fs::write(&files.htpasswd, users).expect("write htpasswd");
    registry.stop();
    registry.restart();
    let (status, body) = registry.token_post(&refresh_grant);
    assert_eq!(status, 400, "after a new password: {body}");
}

#[test]
fn docker_login_through_berthd_keeps_an_identity_token_that_pushes_and_pulls() {
    let Some((_dir, registry, berthd)) = berthd_and_token_registry() else {
        return;
    };
    let host = registry.host();
    let out = berthd.docker(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!out.status.success(), "{}", describe(&out));
    let out = berthd.docker(&["login", "-u", "alice", "-p", "alice-pw", &host]);
    assert!(out.status.success(), "{}", describe(&out));
    // The CLI keeps the refresh token berthd got, not the password.
    let config_path = berthd.dir().join("cli/config.json");
    let config_text = std::fs::read_to_string(&config_path).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(&config_text).expect("JSON");
    let identity = config["auths"][&host]["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken: {config}"));
    assert_eq!(jwt_part(identity, 1)["token_use"], "refresh");
    assert_eq!(jwt_part(identity, 1)["sub"], "alice");
    assert!(
        !config_text.contains("alice-pw") && !config_text.contains("YWxpY2U6YWxpY2UtcHc"),
        "{config_text}"
    );

    let scratch = registry.scratch("identity");
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{host}/team/ident:1");
    berthd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    let out = berthd.docker_ok(&["run", "--rm", &image, "/bin/echo", "identity"]);
    assert_eq!(out.trim(), "identity");
}

#[test]
fn berth_login_keeps_the_identity_token_in_the_home_config_and_pushes_with_it() {
    let Some((_dir, registry, berthd)) = berthd_and_token_registry() else {
        return;
    };
    let host = registry.host();
    // ~/.docker/config.json of a HOME of its own.
    let home = registry.scratch("home");
    let berth = |args: &[&str], stdin: Option<&str>| {
        let mut command = berthd.cli_command(&workspace_binary("berth"));
        command
            .env_remove("DOCKER_CONFIG")
            .env("HOME", &home)
            .args(args);
        match stdin {
            None => output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth"),
            Some(input) => {
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = command.spawn().expect("spawn berth");
                std::io::Write::write_all(
                    &mut child.stdin.take().expect("stdin"),
                    input.as_bytes(),
                )
                .expect("write stdin");
                child.wait_with_output().expect("berth login")
            }
        }
    };
    let out = berth(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some("wrong\n"),
    );
    assert!(!out.status.success(), "{}", describe(&out));
    let config_path = home.join(".docker/config.json");
    assert!(
        !config_path.exists(),
        "a failed login wrote {}",
        config_path.display()
    );
    let out = berth(
        &["login", "-u", "alice", "--password-stdin", &host],
        Some("alice-pw\n"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), "Login Succeeded");
    let config_text = std::fs::read_to_string(&config_path).expect("config.json");
    let config: serde_json::Value = serde_json::from_str(&config_text).expect("JSON");
    let identity = config["auths"][&host]["identitytoken"]
        .as_str()
        .unwrap_or_else(|| panic!("no identitytoken: {config}"));
    assert_eq!(jwt_part(identity, 1)["sub"], "alice");
    // As the docker CLI writes it: the user name without the password.
    assert_eq!(config["auths"][&host]["auth"], "YWxpY2U6", "{config}");
    assert!(!config_text.contains("alice-pw"), "{config_text}");

    let scratch = registry.scratch("berth-identity");
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{host}/alice/ident:1");
    berthd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    let out = berth(&["push", &image], None);
    assert!(out.status.success(), "{}", describe(&out));
    berthd.docker_ok(&["rmi", &image]);
    let out = berth(&["pull", &image], None);
    assert!(out.status.success(), "{}", describe(&out));
    // Logging in again without a password uses the identity token.
    let out = berth(&["login", &host], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("Authenticating with existing credentials"),
        "{}",
        describe(&out)
    );
    // A token the server does not know fails the push, so the one kept is what works.
    let mut forged = config.clone();
    forged["auths"][&host]["identitytoken"] = serde_json::json!("not-a-token");
    std::fs::write(&config_path, forged.to_string()).expect("write config.json");
    let out = berth(&["push", &image], None);
    assert!(!out.status.success(), "{}", describe(&out));
}

#[test]
fn berthd_renews_tokens_that_expire_between_transfers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    // Tokens that last two seconds (`expires_in: 2`).
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &[]);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files.config).expect("read token.json"))
            .expect("token.json");
    config["expiration"] = serde_json::json!(2);
    std::fs::write(&files.config, config.to_string()).expect("write token.json");
    let registry = Registry::start_with_tokens(&files);
    let berthd = Berthd::start();
    let host = registry.host();
    let out = berthd.docker(&["login", "-u", "alice", "-p", "alice-pw", &host]);
    assert!(out.status.success(), "{}", describe(&out));
    let scratch = registry.scratch("short-tokens");
    let tar = make_busybox_rootfs_tar(&scratch);
    let one = format!("{host}/team/short:1");
    let two = format!("{host}/team/short:2");
    berthd.docker_ok(&["import", &tar.to_string_lossy(), &one]);
    berthd.docker_ok(&["tag", &one, &two]);
    // Each step comes after the token of the one before expired: berthd
    // asks for another instead of sending the one it holds.
    for step in [
        vec!["push", one.as_str()],
        vec!["push", two.as_str()],
        vec!["rmi", one.as_str(), two.as_str()],
        vec!["pull", one.as_str()],
        vec!["pull", two.as_str()],
    ] {
        let out = berthd.docker(&step);
        assert!(
            out.status.success(),
            "{step:?}: {}\n{}",
            describe(&out),
            berthd.log()
        );
        std::thread::sleep(Duration::from_millis(2500));
    }
    let out = berthd.docker_ok(&["run", "--rm", &two, "/bin/echo", "renewed"]);
    assert_eq!(out.trim(), "renewed");
}

/// Kills (by the PID it holds) and reaps a child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets a file's mtime two hours back, as if nobody had used it since.
fn backdate(path: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::open(path)
        .and_then(|file| file.set_modified(old))
        .unwrap_or_else(|e| panic!("backdate {}: {e}", path.display()));
}

/// Every blob file in the registry's store.
fn stored_blobs(registry: &Registry) -> Vec<PathBuf> {
    let mut blobs = Vec::new();
    let dirs = std::fs::read_dir(registry.root().join("blobs/sha256")).expect("blob dirs");
    for dir in dirs.flatten() {
        for blob in std::fs::read_dir(dir.path()).expect("blob dir").flatten() {
            blobs.push(blob.path());
        }
    }
    blobs
}

/// skopeo pulls `image` into `dir` and every file it wrote matches the
/// digest the manifest names.
fn pull_and_verify(image: &str, dir: &Path) -> String {
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        image,
        &format!("dir:{}", dir.display()),
    ]);
    assert_success(&out, "skopeo copy from the registry");
    let manifest = std::fs::read(dir.join("manifest.json")).expect("pulled manifest");
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    let named = parsed["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain([parsed["config"].clone()]);
    for descriptor in named {
        let digest = descriptor["digest"].as_str().expect("digest");
        let data = std::fs::read(dir.join(digest.trim_start_matches("sha256:"))).expect("blob");
        assert_eq!(digest_of(&data), digest, "pulled blob differs");
    }
    digest_of(&manifest)
}

#[test]
fn gc_removes_unreferenced_blobs_while_pushes_go_on() {
    let registry = Registry::start(&["--gc-interval", "1", "--gc-grace", "30"]);
    let scratch = registry.scratch("gc");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());

    let orphan = push_blob(&registry, "g/orphan", b"nobody refers to me");
    backdate(&registry.blob_file(&orphan));
    let fresh = push_blob(&registry, "g/orphan", b"pushed a moment ago");
    // An upload in flight is no blob yet; nothing sweeps it.
    let start = registry.http("POST", "/v2/g/upload/blobs/uploads/", &[], None);
    let location = start.header("location").expect("upload location");
    let chunk = registry.http("PATCH", &location, &[], Some(b"first half, "));
    assert_eq!(chunk.status, 202, "{chunk:?}");

    // A push that found its blobs present (HEAD) before a collection and puts
    // its manifest after it: the HEAD made them fresh, so they are still there.
    let layer = push_blob(&registry, "g/race", b"an old layer nobody referred to");
    let config = push_blob(&registry, "g/race", b"{}");
    for blob in [&layer, &config] {
        backdate(&registry.blob_file(blob));
        let head = registry.http("HEAD", &format!("/v2/g/race/blobs/{blob}"), &[], None);
        assert_eq!(head.status, 200, "{head:?}");
    }
    std::thread::sleep(Duration::from_millis(2500));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 31 }],
    });
    let out = put_manifest(&registry, "g/race", "v1", &manifest);
    assert_eq!(out.status, 201, "{out:?}\n{}", registry.log());
    let get = registry.http("GET", &format!("/v2/g/race/blobs/{layer}"), &[], None);
    assert_eq!(get.status, 200, "{get:?}");

    // Each round leaves the previous image's blobs unreferenced and old, then
    // pushes the same image again while the collector runs every second: the
    // push either finds its blobs (and keeps them fresh) or uploads them anew.
    let image = format!("docker://{}/g/app", registry.host());
    for round in 0..3 {
        let tagged = format!("{image}:r{round}");
        let out = skopeo(&["copy", "--dest-tls-verify=false", &layout, &tagged]);
        assert!(
            out.status.success(),
            "push in round {round}: {}\n{}",
            describe(&out),
            registry.log()
        );
        let digest = pull_and_verify(&tagged, &scratch.join(format!("pulled-{round}")));
        if round < 2 {
            let out = registry.http(
                "DELETE",
                &format!("/v2/g/app/manifests/{digest}"),
                &[],
                None,
            );
            assert_eq!(out.status, 202, "{out:?}");
            let fresh_file = registry.blob_file(&fresh);
            for blob in stored_blobs(&registry) {
                if blob != fresh_file {
                    backdate(&blob);
                }
            }
        }
    }

    let started = Instant::now();
    while registry.blob_file(&orphan).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "orphan blob not collected: {}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        registry.blob_file(&fresh).exists(),
        "blob within its grace period collected"
    );
    let head = registry.http("HEAD", &format!("/v2/g/orphan/blobs/{orphan}"), &[], None);
    assert_eq!(head.status, 404, "{head:?}");

    // Collections later, the last image still pulls whole, and the upload
    // that was in flight all along finishes.
    std::thread::sleep(Duration::from_millis(2500));
    pull_and_verify(&format!("{image}:r2"), &scratch.join("pulled-again"));
    let data = b"first half, second half";
    let digest = digest_of(data);
    let finish = registry.http(
        "PUT",
        &format!("{location}?digest={digest}"),
        &[],
        Some(b"second half"),
    );
    assert_eq!(finish.status, 201, "{finish:?}");
    let get = registry.http("GET", &format!("/v2/g/upload/blobs/{digest}"), &[], None);
    assert_eq!((get.status, get.body.as_bytes()), (200, &data[..]));
}

#[test]
fn limits_and_bad_input_get_the_spec_errors() {
    let registry = Registry::start(&[]);
    let config = push_blob(&registry, "l/m", b"{}");
    let manifest_with = |padding: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
            "layers": [],
            "annotations": { "padding": "x".repeat(padding) },
        })
    };
    // The limit is 4 MiB: just under is stored, just over is refused whole.
    let overhead = manifest_with(0).to_string().len();
    let limit = 4 * 1024 * 1024;
    let out = put_manifest(&registry, "l/m", "fits", &manifest_with(limit - overhead));
    assert_eq!(out.status, 201, "{}", out.body);
    let out = put_manifest(
        &registry,
        "l/m",
        "big",
        &manifest_with(limit - overhead + 1),
    );
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (413, "MANIFEST_INVALID"),
        "{out:?}"
    );
    let tags = registry.http("GET", "/v2/l/m/tags/list", &[], None);
    assert!(!tags.body.contains("big"), "{tags:?}");

    let content_type = format!("Content-Type: {OCI_MANIFEST}");
    for (body, what) in [
        (&b"not json"[..], "not JSON"),
        (br#"{"schemaVersion":1}"#, "schemaVersion 2"),
    ] {
        let out = registry.http("PUT", "/v2/l/m/manifests/bad", &[&content_type], Some(body));
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (400, "MANIFEST_INVALID"),
            "{out:?}"
        );
        assert!(out.body.contains(what), "{out:?}");
    }

    // Errors are the spec's JSON, naming what was wrong.
    let long_name = "a".repeat(256);
    for name in ["Upper/case", "a__-b", "x-", "a/.b", long_name.as_str()] {
        let out = registry.http("GET", &format!("/v2/{name}/tags/list"), &[], None);
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (400, "NAME_INVALID"),
            "{name}: {out:?}"
        );
        assert_eq!(
            out.header("content-type").as_deref(),
            Some("application/json")
        );
        let body: serde_json::Value = serde_json::from_str(&out.body).expect("error JSON");
        assert_eq!(body["errors"][0]["detail"]["name"], name, "{body}");
    }
    let long_tag = "t".repeat(129);
    for tag in ["-bad", ".bad", long_tag.as_str()] {
        let out = put_manifest(&registry, "l/m", tag, &manifest_with(0));
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (400, "TAG_INVALID"),
            "{tag}: {out:?}"
        );
        assert!(out.body.contains(tag), "{out:?}");
    }
    for digest in ["sha256:xyz", "md5:abc", "sha256:ABCDEF"] {
        let out = registry.http("GET", &format!("/v2/l/m/blobs/{digest}"), &[], None);
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (400, "DIGEST_INVALID"),
            "{digest}: {out:?}"
        );
    }
    let unknown = digest_of(b"unknown");
    let out = registry.http("GET", &format!("/v2/l/m/blobs/{unknown}"), &[], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let out = registry.http("GET", "/v2/l/m/manifests/nope", &[], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let out = registry.http("GET", "/v2/never/pushed/tags/list", &[], None);
    assert_eq!(
        (out.status, out.error_code().as_str()),
        (404, "NAME_UNKNOWN")
    );
}

#[test]
fn blob_uploads_over_the_limit_are_refused_and_discarded() {
    // The limit from the config file.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("registry.yaml");
    std::fs::write(&config, "max-blob-bytes: 1000\n").expect("write config");
    let registry = Registry::start(&["--config", &config.to_string_lossy()]);
    let octets = "Content-Type: application/octet-stream";
    let refused = |out: &Response, what: &str| {
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (413, "SIZE_INVALID"),
            "{what}: {out:?}"
        );
        assert!(
            out.body.contains("larger than the limit of 1000 bytes"),
            "{what}: {out:?}"
        );
        assert!(
            upload_dirs(&registry).is_empty(),
            "{what}: the partial upload was kept: {:?}",
            upload_dirs(&registry)
        );
    };
    let blob_known = |digest: &str| {
        registry
            .http("HEAD", &format!("/v2/l/b/blobs/{digest}"), &[], None)
            .status
            == 200
    };

    // Monolithic: at the limit is stored, one byte over is refused.
    let fits = incompressible(1000, 1);
    let digest = push_blob(&registry, "l/b", &fits);
    assert!(blob_known(&digest));
    let over = incompressible(1001, 2);
    let over_digest = digest_of(&over);
    let out = registry.http(
        "POST",
        &format!("/v2/l/b/blobs/uploads/?digest={over_digest}"),
        &[octets],
        Some(&over),
    );
    refused(&out, "monolithic POST");
    assert!(!blob_known(&over_digest));

    // Chunked: the chunk that crosses the limit ends the session, whether
    // its length is declared or streamed (Transfer-Encoding: chunked).
    let start = |registry: &Registry| {
        let out = registry.http("POST", "/v2/l/b/blobs/uploads/", &[], None);
        assert_eq!(out.status, 202, "{out:?}");
        out.header("location").expect("Location")
    };
    for streamed in [false, true] {
        let location = start(&registry);
        let out = registry.http(
            "PATCH",
            &location,
            &[octets, "Content-Range: 0-599"],
            Some(&over[..600]),
        );
        assert_eq!(out.status, 202, "{out:?}");
        let mut headers = vec![octets, "Content-Range: 600-1000"];
        if streamed {
            headers.push("Transfer-Encoding: chunked");
        }
        let out = registry.http("PATCH", &location, &headers, Some(&over[600..]));
        refused(&out, if streamed { "streamed PATCH" } else { "PATCH" });
        let out = registry.http("GET", &location, &[], None);
        assert_eq!(
            (out.status, out.error_code().as_str()),
            (404, "BLOB_UPLOAD_UNKNOWN"),
            "{out:?}"
        );
        let out = registry.http(
            "PUT",
            &format!("{location}?digest={over_digest}"),
            &[octets],
            Some(b""),
        );
        assert_eq!(out.error_code(), "BLOB_UPLOAD_UNKNOWN", "{out:?}");
    }
    // The last bytes sent with the closing PUT count too.
    let location = start(&registry);
    let out = registry.http(
        "PATCH",
        &location,
        &[octets, "Content-Range: 0-599"],
        Some(&over[..600]),
    );
    assert_eq!(out.status, 202, "{out:?}");
    let out = registry.http(
        "PUT",
        &format!("{location}?digest={over_digest}"),
        &[octets],
        Some(&over[600..]),
    );
    refused(&out, "closing PUT");
    assert!(!blob_known(&over_digest));
    // What fits still goes through the same way.
    let location = start(&registry);
    let out = registry.http(
        "PUT",
        &format!("{location}?digest={}", digest_of(&fits[..999])),
        &[octets],
        Some(&fits[..999]),
    );
    assert_eq!(out.status, 201, "{out:?}");

    // A limit of 0 is refused at start.
    let out =
        serve_briefly(&["--root", "/nonexistent", "--max-blob-bytes", "0"]).expect("exits at once");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--max-blob-bytes"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_push_of_a_layer_over_the_blob_limit_fails_with_the_registry_s_reason() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    // busybox's layer is about 1 MB; its config is far under the limit.
    let registry = Registry::start(&["--max-blob-bytes", "100000"]);
    let berthd = Berthd::start();
    let scratch = registry.scratch("over-limit");
    let tar = make_busybox_rootfs_tar(&scratch);
    let image = format!("{}/l/too-big:1", registry.host());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    let out = berthd.docker(&["push", &image]);
    assert!(!out.status.success(), "{}", describe(&out));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("blob upload is larger than the limit of 100000 bytes"),
        "{}\n{}",
        describe(&out),
        berthd.log()
    );
    assert!(
        upload_dirs(&registry).is_empty(),
        "{:?}",
        upload_dirs(&registry)
    );
    let out = registry.http("GET", "/v2/l/too-big/tags/list", &[], None);
    assert_eq!(out.error_code(), "NAME_UNKNOWN", "{out:?}");
}

/// oras (the Python SDK) pushes and pulls an artifact, attaches two to an
/// image (as their subject) and finds them with the referrers API.
const ORAS_SCRIPT: &str = r#"
import json, os, sys
import oras.client, oras.oci

host, subject_digest, subject_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = oras.client.OrasClient(hostname=host, insecure=True)
if len(sys.argv) > 4:
    client.auth.set_basic_auth(*sys.argv[4].split(":", 1))

with open("hello.txt", "w") as f:
    f.write("hello from oras\n")
client.push(files=["hello.txt"], target=f"{host}/art/hello:v1", quiet=True)
pulled = client.pull(target=f"{host}/art/hello:v1", outdir="pulled")
assert open(pulled[0]).read() == "hello from oras\n", pulled

subject = oras.oci.Subject(
    mediaType="application/vnd.oci.image.manifest.v1+json",
    digest=subject_digest,
    size=subject_size,
)
for kind in ["sbom", "sig"]:
    with open(f"{kind}.json", "w") as f:
        f.write(json.dumps({kind: True}))
    with open(f"{kind}-config.json", "w") as f:
        f.write("{}")
    client.push(
        files=[f"{kind}.json"],
        target=f"{host}/art/img:{kind}",
        subject=subject,
        manifest_config=f"{kind}-config.json:application/vnd.example.{kind}",
        quiet=True,
    )

url = f"http://{host}/v2/art/img/referrers/{subject_digest}"
found = {
    "all": client.do_request(url).json(),
    "sbom": client.do_request(url + "?artifactType=application/vnd.example.sbom").json(),
}
print(json.dumps(found))
"#;

/// Runs [`ORAS_SCRIPT`] in `dir` with the venv `scripts/test.sh` makes.
fn run_oras(dir: &Path, args: &[&str]) -> serde_json::Value {
    let python = workspace_binary("berth")
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("oras-venv/bin/python3"))
        .expect("target dir");
    assert!(
        python.exists(),
        "{} missing: scripts/test.sh installs oras there (python3 -m venv target/oras-venv && target/oras-venv/bin/pip install oras)",
        python.display()
    );
    std::fs::write(dir.join("oras_test.py"), ORAS_SCRIPT).expect("write script");
    let mut command = Command::new(python);
    command.current_dir(dir).arg("oras_test.py").args(args);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run oras");
    let stdout = assert_success(&out, "oras script");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("oras output {stdout}: {e}"))
}

/// Pushes the busybox layout to `repo:v1` with skopeo; returns the manifest's
/// digest and size.
fn push_subject(registry: &Registry, repo: &str, creds: Option<&str>) -> (String, usize) {
    let scratch = registry.scratch("subject");
    make_busybox_layout(&scratch);
    let layout = format!("oci:{}:v1", scratch.join("layout").display());
    let target = format!("docker://{}/{repo}:v1", registry.host());
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--dest-creds", creds]);
    }
    args.extend([layout.as_str(), target.as_str()]);
    assert_success(&skopeo(&args), "skopeo copy");
    let pulled = scratch.join("pulled");
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if let Some(creds) = creds {
        args.extend(["--src-creds", creds]);
    }
    let dir = format!("dir:{}", pulled.display());
    args.extend([target.as_str(), dir.as_str()]);
    assert_success(&skopeo(&args), "skopeo copy back");
    let manifest = std::fs::read(pulled.join("manifest.json")).expect("manifest");
    (digest_of(&manifest), manifest.len())
}

fn check_referrers(found: &serde_json::Value) {
    let all = found["all"]["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut types: Vec<&str> = all
        .iter()
        .filter_map(|m| m["artifactType"].as_str())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/vnd.example.sbom",
            "application/vnd.example.sig"
        ],
        "{found}"
    );
    let sboms = found["sbom"]["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(sboms.len(), 1, "{found}");
    assert_eq!(sboms[0]["artifactType"], "application/vnd.example.sbom");
}

#[test]
fn oras_pushes_pulls_attaches_and_discovers_referrers() {
    let registry = Registry::start(&[]);
    let (digest, size) = push_subject(&registry, "art/img", None);
    let found = run_oras(
        &registry.scratch("oras"),
        &[&registry.host(), &digest, &size.to_string()],
    );
    check_referrers(&found);

    // The same with token auth, oras fetching its tokens at the realm.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = token_files(dir.path(), &[]);
    let registry = Registry::start_with_tokens(&files);
    let (digest, size) = push_subject(&registry, "art/img", Some("alice:alice-pw"));
    let found = run_oras(
        &registry.scratch("oras"),
        &[
            &registry.host(),
            &digest,
            &size.to_string(),
            "alice:alice-pw",
        ],
    );
    check_referrers(&found);
}

#[test]
fn gc_deletes_untagged_manifests_nothing_kept_refers_to() {
    let registry = Registry::start(&[
        "--gc-interval",
        "1",
        "--gc-grace",
        "30",
        "--gc-delete-untagged",
    ]);
    let repo = "u/app";
    let config = push_blob(&registry, repo, b"{}");
    let image = |layer: &[u8]| {
        let digest = push_blob(&registry, repo, layer);
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 2 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len() }],
        })
    };
    let put = |reference: &str, manifest: &serde_json::Value| {
        let out = put_manifest(&registry, repo, reference, manifest);
        assert_eq!(out.status, 201, "{out:?}");
        out.header("docker-content-digest").expect("digest")
    };
    let by_digest =
        |manifest: &serde_json::Value| put(&digest_of(manifest.to_string().as_bytes()), manifest);
    let referrer = |subject: &str| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2 },
            "layers": [],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 1 },
        })
    };

    // v1 moves from image a to image b: a is untagged now.
    let a = put("v1", &image(b"layer of a"));
    let b = put("v1", &image(b"layer of b"));
    let a_sig = by_digest(&referrer(&a));
    let b_sig = by_digest(&referrer(&b));
    // A tagged index keeps its untagged child.
    let child = by_digest(&image(b"layer of the child"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": child, "size": 1, "platform": { "architecture": "amd64", "os": "linux" } }],
    });
    let content_type = "Content-Type: application/vnd.oci.image.index.v1+json";
    let out = registry.http(
        "PUT",
        &format!("/v2/{repo}/manifests/multi"),
        &[content_type],
        Some(index.to_string().as_bytes()),
    );
    assert_eq!(out.status, 201, "{out:?}");
    let index_digest = out.header("docker-content-digest").expect("digest");

    // All of it put long ago; then an untagged manifest put just now.
    let revisions = registry
        .root()
        .join(format!("repositories/{repo}/_manifests/revisions"));
    for link in std::fs::read_dir(&revisions).expect("revisions").flatten() {
        backdate(&link.path());
    }
    for blob in stored_blobs(&registry) {
        backdate(&blob);
    }
    let fresh = by_digest(&image(b"layer of a fresh push"));

    let manifest_status = |digest: &str| {
        registry
            .http("HEAD", &format!("/v2/{repo}/manifests/{digest}"), &[], None)
            .status
    };
    let started = Instant::now();
    while manifest_status(&a) != 404 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "untagged manifest kept: {}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        manifest_status(&a_sig),
        404,
        "referrer of a deleted manifest kept"
    );
    for kept in [&b, &b_sig, &child, &index_digest, &fresh] {
        assert_eq!(manifest_status(kept), 200, "{kept} deleted");
    }
    let a_layer = digest_of(b"layer of a");
    assert!(!registry.blob_file(&a_layer).exists(), "layer of a kept");
    for layer in [
        &b"layer of b"[..],
        b"layer of the child",
        b"layer of a fresh push",
    ] {
        let digest = digest_of(layer);
        let get = registry.http("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], None);
        assert_eq!(get.status, 200, "{digest}: {get:?}");
    }
    let referrers = registry.http("GET", &format!("/v2/{repo}/referrers/{b}"), &[], None);
    assert!(referrers.body.contains(&b_sig), "{referrers:?}");
}
