#![forbid(unsafe_code)]
//! `docker pull` through berthd against a registry of the tests' own
//! (tests/src/fake_registry.rs) that counts requests and misbehaves on
//! demand: parallel layer downloads and their progress, resumed downloads,
//! shared layers fetched once, `--platform`, `--all-tags`, bad registries
//! (each a clear error, nothing stored, the daemon still up), a crash of
//! berthd in the middle of a pull; and pushes: parallel uploads, retries,
//! cross-repository mounts.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berthd::Berthd;
use berth_tests::fake_registry::{
    incompressible, layer, layer_from_tar, FakeRegistry, Layer, LayerCompression, Misbehavior,
};
use berth_tests::host::{describe, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The busybox root filesystem as a gzip layer, so pulled images run.
fn busybox_layer() -> Layer {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tar = std::fs::read(make_busybox_rootfs_tar(scratch.path())).expect("read busybox tar");
    layer_from_tar(tar, LayerCompression::Gzip)
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing of a failed or interrupted pull is left: no image, no blob, no
/// ingest file, no snapshot or staging directory, no spool file.
#[track_caller]
fn assert_store_empty(berthd: &Berthd) {
    let images = berthd.docker_ok(&["images", "-q"]);
    assert!(images.trim().is_empty(), "images left: {images}");
    let data = berthd.data_root();
    for dir in ["content/blobs/sha256", "content/ingest", "tmp"] {
        let left = entries(&data.join(dir));
        assert!(left.is_empty(), "{dir} holds {left:?}");
    }
    for driver in ["overlay", "vfs"] {
        let left: Vec<String> = entries(&data.join("snapshots").join(driver))
            .into_iter()
            .filter(|e| e != "l" && e != "empty")
            .collect();
        assert!(left.is_empty(), "snapshots/{driver} holds {left:?}");
        let links = entries(&data.join("snapshots").join(driver).join("l"));
        assert!(links.is_empty(), "snapshots/{driver}/l holds {links:?}");
    }
}

/// `POST /images/create` with curl: the JSON lines berthd streams.
fn pull_json(berthd: &Berthd, image: &str, tag: &str) -> Vec<serde_json::Value> {
    let mut command = Command::new("curl");
    command
        .arg("-s")
        .arg("-X")
        .arg("POST")
        .arg("--unix-socket")
        .arg(berthd.socket())
        .arg(format!(
            "http://berth/images/create?fromImage={image}&tag={tag}"
        ));
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run curl");
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn layers_download_in_parallel_and_unpack_as_they_stream() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let mut layers = vec![busybox_layer()];
    for (i, compression) in [
        LayerCompression::Gzip,
        LayerCompression::Zstd,
        LayerCompression::None,
        LayerCompression::Gzip,
    ]
    .into_iter()
    .enumerate()
    {
        let data = incompressible(600 << 10, i as u64);
        let name = format!("data/f{i}");
        layers.push(layer(&[(name.as_str(), &data)], compression));
    }
    // Slow enough that layers overlap, so the limit is what caps them.
    for l in &layers[1..] {
        registry.misbehave(
            &format!("/v2/t/par/blobs/{}", l.digest),
            Misbehavior::Throttle(1 << 20),
        );
    }
    let pushed = registry.add_image("t/par", "1", host_arch(), &layers);
    let berthd = Berthd::builder()
        .arg("--max-concurrent-downloads")
        .arg("2")
        .start();
    let image = format!("{}/t/par", registry.host());

    let lines = pull_json(&berthd, &image, "1");
    let statuses: Vec<(String, String)> = lines
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or("").to_string(),
                v["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        lines.iter().all(|v| v.get("error").is_none()),
        "pull failed: {lines:?}"
    );
    for l in &layers {
        let short = &l.digest[7..19];
        for wanted in [
            "Pulling fs layer",
            "Verifying Checksum",
            "Download complete",
            "Pull complete",
        ] {
            assert!(
                statuses.iter().any(|(i, s)| i == short && s == wanted),
                "no {wanted:?} for {short}: {statuses:?}"
            );
        }
    }
    assert!(
        statuses.iter().any(|(_, s)| s == "Waiting"),
        "layers beyond the limit wait: {statuses:?}"
    );
    let downloading = lines
        .iter()
        .find(|v| v["status"] == "Downloading")
        .expect("a Downloading line");
    assert!(
        downloading["progressDetail"]["total"].as_u64().unwrap_or(0) > 0,
        "{downloading}"
    );
    assert!(
        statuses
            .iter()
            .any(|(_, s)| *s == format!("Digest: {}", pushed.manifest_digest)),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|(_, s)| *s == format!("Status: Downloaded newer image for {image}:1")),
        "{statuses:?}"
    );
    assert_eq!(
        registry.max_parallel_blob_gets(),
        2,
        "two layers at a time with --max-concurrent-downloads 2"
    );
    for l in &layers {
        let gets = registry.gets_of(&format!("/v2/t/par/blobs/{}", l.digest));
        assert_eq!(
            gets.len(),
            1,
            "layer {} fetched {} times",
            l.digest,
            gets.len()
        );
    }
    // Every layer's files are where they belong, whatever its compression.
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        &format!("{image}:1"),
        "sh",
        "-c",
        "wc -c /data/f0 /data/f1 /data/f2 /data/f3",
    ]);
    assert_eq!(out.matches("614400").count(), 4, "{out}");
    let id = berthd.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{image}:1"),
    ]);
    assert_eq!(id.trim(), pushed.config_digest);

    // The docker CLI draws the same stream.
    berthd.docker_ok(&["rmi", &format!("{image}:1")]);
    let out = berthd.docker_ok(&["pull", &format!("{image}:1")]);
    assert!(out.contains("Pull complete"), "{out}");
}

#[test]
fn vfs_pulls_stage_the_base_layer_and_unpack_the_rest_in_order() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let base = busybox_layer();
    let layers = vec![
        base.clone(),
        layer(&[("data/one", b"one")], LayerCompression::Zstd),
        layer(&[("data/two", b"two")], LayerCompression::None),
    ];
    registry.add_image("t/vfs", "1", host_arch(), &layers);
    let more = vec![
        base,
        layer(&[("data/three", b"three")], LayerCompression::Gzip),
    ];
    registry.add_image("t/vfs", "2", host_arch(), &more);
    let berthd = Berthd::builder().arg("--storage-driver").arg("vfs").start();
    for tag in ["1", "2"] {
        let image = format!("{}/t/vfs:{tag}", registry.host());
        berthd.docker_ok(&["pull", &image]);
    }
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        &format!("{}/t/vfs:1", registry.host()),
        "cat",
        "/data/one",
        "/data/two",
    ]);
    assert_eq!(out, "onetwo");
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        &format!("{}/t/vfs:2", registry.host()),
        "cat",
        "/data/three",
    ]);
    assert_eq!(out, "three");
}

#[test]
fn an_interrupted_layer_resumes_where_it_stopped() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let big = layer(
        &[("blob", &incompressible(2 << 20, 7))],
        LayerCompression::Gzip,
    );
    let path = format!("/v2/t/resume/blobs/{}", big.digest);
    registry.misbehave(&path, Misbehavior::DropOnce(1 << 20));
    registry.add_image("t/resume", "1", host_arch(), std::slice::from_ref(&big));
    let berthd = Berthd::start();
    let image = format!("{}/t/resume:1", registry.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "pull: {}", describe(&out));

    let gets = registry.gets_of(&path);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let from: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("second GET is no open Range: {:?}", gets[1]));
    assert!(
        from > 0 && from <= 1 << 20,
        "resumed from byte {from}, not from what was received"
    );
    let out = berthd.docker_ok(&["image", "inspect", "--format", "{{.Size}}", &image]);
    assert!(out.trim().parse::<u64>().unwrap_or(0) >= 2 << 20, "{out}");

    // A registry that ignores Range sends the whole blob again: what was
    // received already is skipped, the rest appended.
    let other = layer(
        &[("blob", &incompressible(2 << 20, 8))],
        LayerCompression::Zstd,
    );
    let path = format!("/v2/t/norange/blobs/{}", other.digest);
    registry.misbehave(&path, Misbehavior::DropOnceNoRange(1 << 20));
    let pushed = registry.add_image("t/norange", "1", host_arch(), std::slice::from_ref(&other));
    let image = format!("{}/t/norange:1", registry.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    assert_eq!(registry.gets_of(&path).len(), 2);
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pushed.config_digest);
}

#[test]
fn blobs_redirected_to_another_host_are_fetched_there() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let cdn = FakeRegistry::start();
    let big = layer(
        &[("blob", &incompressible(1 << 20, 9))],
        LayerCompression::Gzip,
    );
    let at_cdn = format!("/cdn/{}", &big.digest[7..]);
    cdn.serve_bytes(&at_cdn, big.data.clone());
    let path = format!("/v2/t/cdn/blobs/{}", big.digest);
    registry.misbehave(
        &path,
        Misbehavior::RedirectTo(format!("http://{}{at_cdn}?signature=x", cdn.host())),
    );
    let pushed = registry.add_image("t/cdn", "1", host_arch(), std::slice::from_ref(&big));
    let berthd = Berthd::start();
    // Credentials for the registry, as `docker login` leaves them.
    let cli = berthd.dir().join("cli");
    std::fs::create_dir_all(&cli).expect("create cli dir");
    std::fs::write(
        cli.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dXNlcjpzM2NyZXQ="}}}}}}"#,
            registry.host()
        ),
    )
    .expect("write config.json");
    let image = format!("{}/t/cdn:1", registry.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "pull: {}", describe(&out));
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pushed.config_digest);
    let fetched = cdn.gets_of(&at_cdn);
    assert_eq!(fetched.len(), 1, "{:?}", cdn.requests());
    assert_eq!(fetched[0].query, "signature=x");
    assert!(
        registry.gets_of(&path).iter().all(|r| r.authorized),
        "the registry got no credentials"
    );
    assert!(!fetched[0].authorized, "credentials went to the other host");
}

#[test]
fn two_pulls_sharing_a_layer_fetch_it_once() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let shared = layer(
        &[("shared", &incompressible(3 << 20, 11))],
        LayerCompression::Gzip,
    );
    let shared_path_a = format!("/v2/t/a/blobs/{}", shared.digest);
    let shared_path_b = format!("/v2/t/b/blobs/{}", shared.digest);
    // 3 MiB at 2 MiB/s: both pulls are under way before it ends.
    registry.misbehave(&shared_path_a, Misbehavior::Throttle(2 << 20));
    registry.misbehave(&shared_path_b, Misbehavior::Throttle(2 << 20));
    let own_a = layer(&[("a", b"a")], LayerCompression::Gzip);
    let own_b = layer(&[("b", b"b")], LayerCompression::Gzip);
    registry.add_image("t/a", "1", host_arch(), &[shared.clone(), own_a]);
    registry.add_image("t/b", "1", host_arch(), &[shared.clone(), own_b]);
    let berthd = Berthd::start();

    let spawn = |image: String| {
        let mut command = berthd.docker_command();
        command
            .args(["pull", &image])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("spawn docker pull")
    };
    let a = spawn(format!("{}/t/a:1", registry.host()));
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn(format!("{}/t/b:1", registry.host()));
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait for docker pull");
        assert!(out.status.success(), "pull: {}", describe(&out));
    }
    let fetched = registry.gets_of(&shared_path_a).len() + registry.gets_of(&shared_path_b).len();
    assert_eq!(fetched, 1, "the shared layer was fetched {fetched} times");
    for image in ["t/a:1", "t/b:1"] {
        berthd.docker_ok(&["image", "inspect", &format!("{}/{image}", registry.host())]);
    }
}

#[test]
fn platform_picks_from_an_index_and_all_tags_pulls_every_tag() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let amd = registry.add_image(
        "t/multi",
        "",
        "amd64",
        &[layer(&[("arch", b"amd64")], LayerCompression::Gzip)],
    );
    let arm = registry.add_image(
        "t/multi",
        "",
        "arm64",
        &[layer(&[("arch", b"arm64")], LayerCompression::Gzip)],
    );
    let index = registry.add_index(
        "t/multi",
        "1",
        &[("linux/amd64", &amd), ("linux/arm64/v8", &arm)],
    );
    let berthd = Berthd::start();
    let image = format!("{}/t/multi:1", registry.host());

    let out = berthd.docker_ok(&["pull", "--platform", "linux/arm64", &image]);
    // As dockerd: the index's digest, which pulls the image again.
    assert!(out.contains(&format!("Digest: {index}")), "{out}");
    let arch = berthd.docker_ok(&["image", "inspect", "--format", "{{.Architecture}}", &image]);
    assert_eq!(arch.trim(), "arm64");
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), arm.config_digest);

    let out = berthd.docker(&["pull", "--platform", "linux/s390x", &image]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("no matching manifest for linux/s390x"),
        "{}",
        describe(&out)
    );

    // A plain manifest of another platform is refused by name.
    registry.add_image(
        "t/single",
        "1",
        "arm64",
        &[layer(&[("arch", b"arm64")], LayerCompression::Gzip)],
    );
    let single = format!("{}/t/single:1", registry.host());
    let out = berthd.docker(&["pull", "--platform", "linux/s390x", &single]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("does not provide the specified platform (linux/s390x)"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["image", "inspect", &single]);
    assert!(!out.status.success(), "a refused image was stored");

    // Five tags, two to a page: three pages of tags/list.
    for tag in ["a", "b", "c", "d", "e"] {
        registry.add_image(
            "t/tags",
            tag,
            host_arch(),
            &[layer(&[("tag", tag.as_bytes())], LayerCompression::Gzip)],
        );
    }
    let repo = format!("{}/t/tags", registry.host());
    let out = berthd.docker_ok(&["pull", "--all-tags", &repo]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {repo}")),
        "{out}"
    );
    let tags = berthd.docker_ok(&["images", "--format", "{{.Tag}}", &repo]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c", "d", "e"]);
    let pages = registry
        .requests()
        .iter()
        .filter(|r| r.path == "/v2/t/tags/tags/list")
        .count();
    assert!(pages >= 3, "tags/list was read in {pages} pages");
}

/// One misbehaving registry case: what it does and what the error says.
struct Case {
    name: &'static str,
    misbehave: Option<Misbehavior>,
    /// Misbehave on the manifest instead of the layer.
    on_manifest: bool,
    error: &'static str,
}

#[test]
fn bad_registries_give_clear_errors_and_store_nothing() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let berthd = Berthd::builder().env("BERTH_REGISTRY_TIMEOUT", "2").start();
    let schema1 = br#"{"schemaVersion":1,"name":"t/x","tag":"1","fsLayers":[],"history":[]}"#;
    let cases = [
        Case {
            name: "wrongdigest",
            misbehave: Some(Misbehavior::WrongDigest),
            on_manifest: false,
            error: "digest mismatch",
        },
        Case {
            name: "wrongsize",
            misbehave: Some(Misbehavior::ExtraBytes),
            on_manifest: false,
            error: "size mismatch",
        },
        Case {
            name: "truncated",
            misbehave: Some(Misbehavior::Truncate(100_000)),
            on_manifest: false,
            error: "gave up after 5 tries",
        },
        Case {
            name: "unavailable",
            misbehave: Some(Misbehavior::Status(503)),
            on_manifest: false,
            error: "answered 503",
        },
        Case {
            name: "loop",
            misbehave: Some(Misbehavior::RedirectLoop),
            on_manifest: false,
            error: "redirect loop",
        },
        Case {
            name: "stall",
            misbehave: Some(Misbehavior::Stall),
            on_manifest: false,
            error: "stalled",
        },
        Case {
            name: "malformed",
            misbehave: Some(Misbehavior::Body(
                "application/vnd.oci.image.manifest.v1+json".into(),
                b"{\"schemaVersion\": 2, \"layers\": [".to_vec(),
            )),
            on_manifest: true,
            error: "manifest that can't be used",
        },
        Case {
            name: "schema1",
            misbehave: Some(Misbehavior::Body(
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
                schema1.to_vec(),
            )),
            on_manifest: true,
            error: "schema 1 manifest, which is not supported",
        },
        Case {
            name: "manifeststall",
            misbehave: Some(Misbehavior::Stall),
            on_manifest: true,
            error: "stalled",
        },
        Case {
            name: "manifest503",
            misbehave: Some(Misbehavior::Status(503)),
            on_manifest: true,
            error: "answered 503",
        },
    ];
    for case in &cases {
        let repo = format!("t/{}", case.name);
        let big = layer(
            &[("blob", &incompressible(512 << 10, 3))],
            LayerCompression::Gzip,
        );
        registry.add_image(&repo, "1", host_arch(), std::slice::from_ref(&big));
        if let Some(how) = &case.misbehave {
            let path = if case.on_manifest {
                format!("/v2/{repo}/manifests/1")
            } else {
                format!("/v2/{repo}/blobs/{}", big.digest)
            };
            registry.misbehave(&path, how.clone());
        }
        let image = format!("{}/{repo}:1", registry.host());
        let started = Instant::now();
        let out = berthd.docker(&["pull", &image]);
        assert!(!out.status.success(), "{}: {}", case.name, describe(&out));
        let stderr = text(&out.stderr);
        eprintln!("{}: {}", case.name, stderr.trim());
        assert!(
            stderr.contains(case.error),
            "{}: wanted {:?} in: {}\n{}",
            case.name,
            case.error,
            describe(&out),
            berthd.log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} took {:?}",
            case.name,
            started.elapsed()
        );
        assert_store_empty(&berthd);
    }
    berthd.docker_ok(&["version"]);
}

#[test]
fn a_crash_mid_pull_leaves_a_consistent_store() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = FakeRegistry::start();
    let big = layer(
        &[("blob", &incompressible(6 << 20, 5))],
        LayerCompression::Gzip,
    );
    let small = layer(&[("small", b"small")], LayerCompression::Gzip);
    let path = format!("/v2/t/crash/blobs/{}", big.digest);
    registry.misbehave(&path, Misbehavior::Throttle(2 << 20));
    let pushed = registry.add_image("t/crash", "1", host_arch(), &[small, big]);
    let mut berthd = Berthd::start();
    let image = format!("{}/t/crash:1", registry.host());

    let mut pull = berthd.docker_command();
    pull.args(["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = pull.spawn().expect("spawn docker pull");
    // Part of the big layer is in: its ingest and the small layer's
    // staging or commit are on disk.
    let started = Instant::now();
    while registry.gets_of(&path).is_empty() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let ingest = entries(&berthd.data_root().join("content/ingest"));
    assert!(!ingest.is_empty(), "no download in progress to interrupt");
    berthd.kill9();
    let _ = child.wait();

    berthd.spawn();
    assert_store_empty(&berthd);
    registry.misbehave(&path, Misbehavior::Throttle(64 << 20));
    let out = berthd.docker(&["pull", &image]);
    assert!(
        out.status.success(),
        "pull after restart: {}",
        describe(&out)
    );
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pushed.config_digest);
}

#[test]
fn pushes_upload_in_parallel_retry_and_mount() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let source = FakeRegistry::start();
    let mut layers = vec![busybox_layer()];
    for i in 0..4u64 {
        let data = incompressible(600 << 10, 20 + i);
        let name = format!("data/p{i}");
        layers.push(layer(&[(name.as_str(), &data)], LayerCompression::Gzip));
    }
    source.add_image("t/src", "1", host_arch(), &layers);
    let berthd = Berthd::builder()
        .arg("--max-concurrent-uploads")
        .arg("2")
        .start();
    let from = format!("{}/t/src:1", source.host());
    berthd.docker_ok(&["pull", &from]);
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &from]);

    // Another registry, slow to read uploads, refusing the first one.
    let target = FakeRegistry::start();
    target.throttle_uploads(2 << 20);
    target.misbehave("/v2/t/dst/blobs/uploads/", Misbehavior::StatusOnce(503));
    let dst = format!("{}/t/dst:1", target.host());
    berthd.docker_ok(&["tag", &from, &dst]);
    let out = berthd.docker_ok(&["push", &dst]);
    assert!(out.contains("Retrying in"), "{out}");
    assert!(out.contains("1: digest: sha256:"), "{out}");
    assert_eq!(
        target.max_parallel_uploads(),
        2,
        "two layers at a time with --max-concurrent-uploads 2"
    );
    for l in &layers {
        let heads = target
            .requests()
            .iter()
            .filter(|r| r.method == "HEAD" && r.path == format!("/v2/t/dst/blobs/{}", l.digest))
            .count();
        assert!(heads >= 1, "no existence check for {}", l.digest);
    }

    // A second repository on that registry mounts every layer.
    let other = format!("{}/t/other:1", target.host());
    berthd.docker_ok(&["tag", &from, &other]);
    let out = berthd.docker_ok(&["push", &other]);
    let mounted = out
        .lines()
        .filter(|l| l.ends_with("Mounted from t/dst"))
        .count();
    assert_eq!(mounted, layers.len(), "{out}");
    let uploads = target
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" || r.method == "PUT")
        .filter(|r| r.path.starts_with("/v2/t/other/blobs/"))
        .count();
    assert_eq!(uploads, 1, "only the config is uploaded: {out}");

    // What was pushed pulls back as the same image.
    berthd.docker_ok(&["rmi", &from, &dst, &other]);
    berthd.docker_ok(&["pull", &other]);
    let again = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &other]);
    assert_eq!(again, id);
}
