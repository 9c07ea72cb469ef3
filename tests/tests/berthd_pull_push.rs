#![forbid(unsafe_code)]
//! `docker pull` and `docker push` through berthd, driven by the docker CLI:
//! against `berth registry serve`, Debian's docker-registry (distribution
//! 2.8), and images pushed there by Debian's dockerd.

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berthd::{free_loopback_port, Berthd};
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{
    assert_success, describe, output_in_terminal, text, DockerApi, CLI_TIMEOUT,
};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout, workspace_binary};

const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry process on a loopback port; dropping it kills the process
/// (by the PID this guard started) and removes its root.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// `berth registry serve`.
    fn berth() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let mut command = Command::new(workspace_binary("berth"));
        command
            .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--root")
            .arg(dir.path().join("root"));
        Registry::spawn(command, port, dir)
    }

    /// Debian's docker-registry with a minimal config.
    fn distribution() -> Registry {
        Registry::distribution_logging("warn")
    }

    /// Debian's docker-registry logging at `level` (`info` logs each request).
    fn distribution_logging(level: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: {level}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("root").display()
            ),
        )
        .expect("write config.yml");
        let mut command = Command::new(DOCKER_REGISTRY);
        command.arg("serve").arg(&config);
        Registry::spawn(command, port, dir)
    }

    /// `berth registry serve` over TLS with `cert` and `key`.
    fn berth_with_tls(cert: &Path, key: &Path) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let mut command = Command::new(workspace_binary("berth"));
        command
            .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
        Registry::spawn(command, port, dir)
    }

    /// `berth registry serve` that wants Basic credentials from `htpasswd`.
    fn berth_with_htpasswd(htpasswd: &Path) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let mut command = Command::new(workspace_binary("berth"));
        command
            .args(["registry", "serve", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--htpasswd")
            .arg(htpasswd);
        Registry::spawn(command, port, dir)
    }

    fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir) -> Registry {
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create log");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn registry");
        let mut registry = Registry { child, port, dir };
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("registry exited with {status}: {}", registry.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "registry not listening: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn image_id(daemon: &impl DockerApi, image: &str) -> String {
    daemon
        .docker_ok(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// busybox imported into berthd as `image`; returns its ID.
fn import_busybox(berthd: &Berthd, scratch: &Path, image: &str) -> String {
    let tar = make_busybox_rootfs_tar(scratch);
    berthd.docker_ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        &tar.to_string_lossy(),
        image,
    ]);
    image_id(berthd, image)
}

/// push, rmi, pull back: same ID, RepoDigests from the push, and it runs.
fn push_rmi_pull_run(berthd: &Berthd, registry: &Registry) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let image = format!("{}/t/bb:1", registry.host());
    let id = import_busybox(berthd, scratch.path(), &image);

    let pushed = berthd.docker_ok(&["push", &image]);
    let digest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "no digest line in push output: {pushed}\n{}",
                registry.log()
            )
        })
        .to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");
    let again = berthd.docker_ok(&["push", &image]);
    assert!(
        again.contains("Layer already exists"),
        "second push: {again}"
    );

    berthd.docker_ok(&["rmi", &image]);
    let pulled = berthd.docker_ok(&["pull", &image]);
    assert!(
        pulled.contains(&format!("Digest: {digest}")) && pulled.contains("Downloaded newer image"),
        "pull said: {pulled}"
    );
    assert_eq!(image_id(berthd, &image), id);
    let digests = berthd.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    assert!(
        digests.contains(&format!("{}/t/bb@{digest}", registry.host())),
        "RepoDigests: {digests}"
    );
    let again = berthd.docker_ok(&["pull", &image]);
    assert!(
        again.contains("Image is up to date"),
        "second pull: {again}"
    );

    let by_digest = format!("{}/t/bb@{digest}", registry.host());
    berthd.docker_ok(&["pull", &by_digest]);
    assert_eq!(image_id(berthd, &by_digest), id);

    let out = berthd.docker_ok(&["run", "--rm", &image, "echo", "pulled"]);
    assert_eq!(out.trim(), "pulled");

    // `docker run` of an image berthd lacks pulls it first.
    berthd.docker_ok(&["rmi", "-f", &id]);
    let out = berthd.docker(&["run", "--rm", &image, "echo", "pulled by run"]);
    assert!(
        out.status.success(),
        "run of a missing image: {}",
        describe(&out)
    );
    assert_eq!(text(&out.stdout).trim(), "pulled by run");
    assert!(
        text(&out.stderr).contains("Unable to find image"),
        "{}",
        describe(&out)
    );
}

#[test]
fn push_and_pull_with_the_berth_registry() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = Registry::berth();
    let berthd = Berthd::start();
    push_rmi_pull_run(&berthd, &registry);

    // In a terminal the CLI draws the progress lines in place.
    let image = format!("{}/t/bb:1", registry.host());
    berthd.docker_ok(&["rmi", "-f", &image_id(&berthd, &image)]);
    let mut command = berthd.docker_command();
    command.args(["pull", &image]);
    let out = output_in_terminal(&command, CLI_TIMEOUT).expect("pull in a terminal");
    let shown = text(&out.stdout);
    assert!(
        out.status.success(),
        "pull in a terminal: {}",
        describe(&out)
    );
    assert!(
        shown.contains("Pull complete") && shown.contains("Downloaded newer image"),
        "{shown}"
    );

    let out = berthd.docker(&["push", &format!("{}/t/none:1", registry.host())]);
    assert!(
        !out.status.success(),
        "push of a missing image: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("An image does not exist locally with the tag"),
        "{}",
        describe(&out)
    );

    let missing = format!("{}/t/bb:nope", registry.host());
    let out = berthd.docker(&["pull", &missing]);
    assert!(
        !out.status.success(),
        "pull of a missing tag: {}",
        describe(&out)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "manifest for {missing} not found: manifest unknown"
        )),
        "{stderr}"
    );
}

/// `docker push -a` (the API's push without a tag) sends every tag of the
/// repository, under one "The push refers to" line, as dockerd.
#[test]
fn push_without_a_tag_sends_every_tag() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = Registry::berth();
    let berthd = Berthd::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let repo = format!("{}/t/all", registry.host());
    import_busybox(&berthd, scratch.path(), &format!("{repo}:a"));
    berthd.docker_ok(&["tag", &format!("{repo}:a"), &format!("{repo}:b")]);

    let pushed = berthd.docker_ok(&["push", "-a", &repo]);
    assert_eq!(
        pushed.matches("The push refers to repository").count(),
        1,
        "{pushed}"
    );
    assert!(
        pushed.contains("a: digest: sha256:") && pushed.contains("b: digest: sha256:"),
        "{pushed}"
    );
    let tags: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ]))
    .expect("list-tags JSON");
    assert_eq!(tags["Tags"], serde_json::json!(["a", "b"]), "{tags}");

    // A tag the repository lacks here, while it has others: dockerd's words.
    let out = berthd.docker(&["push", &format!("{repo}:c")]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!("tag does not exist: {repo}:c")),
        "{}",
        describe(&out)
    );

    let none = format!("{}/t/none", registry.host());
    let out = berthd.docker(&["push", "-a", &none]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "An image does not exist locally with the tag: {none}"
        )),
        "{}",
        describe(&out)
    );
}

/// A pull by digest names the whole reference on its first line, as
/// dockerd: `<host>/t/d@sha256:…: Pulling from t/d`.
#[test]
fn a_pull_by_digest_is_labelled_with_the_reference() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = Registry::berth();
    let berthd = Berthd::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let image = format!("{}/t/d:1", registry.host());
    import_busybox(&berthd, scratch.path(), &image);
    let digest = pushed_digest(&berthd.docker_ok(&["push", &image]));
    berthd.docker_ok(&["rmi", &image]);
    let by_digest = format!("{}/t/d@{digest}", registry.host());
    let pulled = berthd.docker_ok(&["pull", &by_digest]);
    assert_eq!(
        pulled.lines().next(),
        Some(format!("{by_digest}: Pulling from t/d").as_str()),
        "{pulled}"
    );
}

/// A pull of an image already here lists none of its layers, as dockerd:
/// only the digest and "Image is up to date".
#[test]
fn a_pull_of_an_image_here_lists_no_layers() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let registry = Registry::berth();
    let berthd = Berthd::start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let image = format!("{}/t/here:1", registry.host());
    import_busybox(&berthd, scratch.path(), &image);
    berthd.docker_ok(&["push", &image]);
    let pulled = berthd.docker_ok(&["pull", &image]);
    assert!(
        pulled.contains("Status: Image is up to date") && !pulled.contains("Already exists"),
        "{pulled}"
    );
}

#[test]
fn push_and_pull_with_debian_docker_registry() {
    if !is_root() || !Path::new(DOCKER_REGISTRY).exists() {
        eprintln!("skipped: needs root and {DOCKER_REGISTRY}");
        return;
    }
    let registry = Registry::distribution();
    let berthd = Berthd::start();
    push_rmi_pull_run(&berthd, &registry);
}

#[test]
fn berthd_and_dockerd_pull_what_the_other_pushed() {
    if !is_root() {
        eprintln!("skipped: dockerd and berthd need root");
        return;
    }
    let registry = Registry::berth();
    let dockerd = Dockerd::builder()
        .arg(format!("--insecure-registry={}", registry.host()))
        .start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(scratch.path());
    let image = format!("{}/from/dockerd:v1", registry.host());
    dockerd.docker_ok(&["import", &tar.to_string_lossy(), &image]);
    dockerd.docker_ok(&["push", &image]);
    let id = image_id(&dockerd, &image);

    let berthd = Berthd::start();
    let pulled = berthd.docker_ok(&["pull", &image]);
    assert!(pulled.contains("Pull complete"), "pull said: {pulled}");
    assert_eq!(image_id(&berthd, &image), id);
    let out = berthd.docker_ok(&["run", "--rm", &image, "/bin/echo", "from dockerd"]);
    assert_eq!(out.trim(), "from dockerd");

    // And back: what berthd pushes, dockerd pulls as the same image.
    let back = format!("{}/from/berthd:v1", registry.host());
    berthd.docker_ok(&["tag", &image, &back]);
    berthd.docker_ok(&["push", &back]);
    dockerd.docker_ok(&["pull", &back]);
    assert_eq!(image_id(&dockerd, &back), id);
}

/// A bcrypt htpasswd entry made with the host's crypt(3), as
/// registry_server.rs does.
fn htpasswd_entry(user: &str, password: &str) -> String {
    let script = "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
    let mut command = Command::new("/usr/bin/python3");
    command.args(["-W", "ignore", "-c", script, password]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run python3");
    let hash = assert_success(&out, "python3 crypt").trim().to_owned();
    format!("{user}:{hash}\n")
}

#[test]
fn basic_auth_comes_from_the_cli_config() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let htpasswd = scratch.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_entry("user", "s3cret")).expect("write htpasswd");
    let registry = Registry::berth_with_htpasswd(&htpasswd);
    let berthd = Berthd::start();
    let image = format!("{}/auth/bb:1", registry.host());
    let id = import_busybox(&berthd, scratch.path(), &image);

    let out = berthd.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "push without credentials: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("authentication required"),
        "{}",
        describe(&out)
    );

    // What `docker login` would leave in the CLI's config.
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
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&berthd, &image), id);
}

/// A CA and a certificate it signed for IP 127.0.0.1, in `dir`: returns the
/// CA's, the certificate's and its key's paths.
fn make_ca_and_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    let script = format!(
        "set -e
        openssl req -x509 {ec} -days 1 -subj '/CN=berth test CA' -keyout ca.key -out ca.pem
        openssl req {ec} -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr
        printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > leaf.ext
        openssl x509 -req -days 1 -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile leaf.ext -out cert.pem"
    );
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).current_dir(dir);
    let out = output_with_timeout(&mut sh, CLI_TIMEOUT).expect("run openssl");
    assert_success(&out, "openssl");
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn push_and_pull_over_tls_with_a_certs_d_ca() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_ca_and_certificate(scratch.path());
    let registry = Registry::berth_with_tls(&cert, &key);
    let certs_d = scratch.path().join("certs.d");
    let berthd = Berthd::builder()
        .arg("--registry-certs-dir")
        .arg(certs_d.to_string_lossy())
        .start();
    let image = format!("{}/tls/bb:1", registry.host());
    let id = import_busybox(&berthd, scratch.path(), &image);

    let out = berthd.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "push to an untrusted registry: {}",
        describe(&out)
    );

    // The registry's CA in `<certs dir>/<host>/`, where berthd looks for it.
    let trusted = certs_d.join(registry.host());
    std::fs::create_dir_all(&trusted).expect("create certs.d dir");
    std::fs::copy(&ca, trusted.join("ca.crt")).expect("install ca.crt");
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&berthd, &image), id);
}

/// A tar of one incompressible file of `len` bytes at `/big`.
fn big_file_tar(dir: &Path, len: usize) -> PathBuf {
    let data = berth_tests::fake_registry::incompressible(len, 42);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "big", &data[..])
        .expect("append big file");
    let path = dir.join("big.tar");
    std::fs::write(&path, builder.into_inner().expect("finish tar")).expect("write big.tar");
    path
}

#[test]
fn big_layers_go_up_in_chunks_and_known_blobs_are_mounted() {
    if !is_root() || !Path::new(DOCKER_REGISTRY).exists() {
        eprintln!("skipped: needs root and {DOCKER_REGISTRY}");
        return;
    }
    let registry = Registry::distribution_logging("info");
    let berthd = Berthd::builder()
        .arg("--max-concurrent-uploads")
        .arg("2")
        .start();
    let scratch = tempfile::tempdir().expect("tempdir");
    let first = format!("{}/a/big:1", registry.host());
    berthd.docker_ok(&[
        "import",
        &big_file_tar(scratch.path(), 40 << 20).to_string_lossy(),
        &first,
    ]);
    let id = image_id(&berthd, &first);

    let pushed = berthd.docker_ok(&["push", &first]);
    assert!(pushed.contains("Pushed"), "{pushed}");
    let digest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line: {pushed}"))
        .to_string();
    // 40 MiB in 16 MiB chunks: three PATCHes with Content-Range.
    let patches = registry
        .log()
        .lines()
        .filter(|l| l.contains("\"PATCH /v2/a/big/blobs/uploads/"))
        .count();
    assert_eq!(patches, 3, "PATCH requests:\n{}", registry.log());
    // dockerd records the pushed digest.
    let digests = berthd.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &first,
    ]);
    assert!(
        digests.contains(&format!("{}/a/big@{digest}", registry.host())),
        "{digests}"
    );

    // Another repository on the same registry: the layer is mounted.
    let second = format!("{}/b/big:1", registry.host());
    berthd.docker_ok(&["tag", &first, &second]);
    let pushed = berthd.docker_ok(&["push", &second]);
    assert!(
        // The repository as dockerd names it: its path on the registry.
        pushed.contains("Mounted from a/big")
            && !pushed.contains(&format!("Mounted from {}", registry.host())),
        "{pushed}"
    );
    assert!(
        registry.log().contains("mount="),
        "no mount request:\n{}",
        registry.log()
    );
    berthd.docker_ok(&["rmi", &first, &second]);
    berthd.docker_ok(&["pull", &second]);
    // The same ID: the same config, whose diff_id the pulled layer matched.
    assert_eq!(image_id(&berthd, &second), id);
}

/// `HEAD /v2/<repo>/manifests/<digest>` on `host`: the status curl saw.
fn head_manifest(host: &str, repo: &str, digest: &str) -> String {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{host}/v2/{repo}/manifests/{digest}"));
    let out = output_with_timeout(&mut curl, CLI_TIMEOUT).expect("run curl");
    text(&out.stdout)
}

/// The digest of `docker push`'s `<tag>: digest: sha256:… size: N` line.
fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split(": digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in {out}"))
        .to_string()
}

#[test]
fn a_pulled_image_is_pushed_with_the_manifest_it_was_pulled_with() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    use berth_tests::fake_registry::{layer, FakeRegistry, LayerCompression};
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    // An OCI manifest with annotations, compact JSON: a manifest berthd
    // would build for this image has another digest.
    let source = FakeRegistry::start();
    let layers = [
        layer(&[("a", b"first layer")], LayerCompression::Gzip),
        layer(&[("b", b"second layer")], LayerCompression::None),
    ];
    let annotations =
        serde_json::json!({"org.opencontainers.image.source": "https://example.org/src"});
    let original =
        source.add_image_annotated("t/annotated", "1", arch, &layers, Some(annotations.clone()));
    let same = source.add_image_annotated("t/multi", "", arch, &layers, Some(annotations));
    assert_eq!(same.manifest_digest, original.manifest_digest);
    let other = source.add_image("t/multi", "", "riscv64", &layers[..1]);
    let index = source.add_index(
        "t/multi",
        "1",
        &[(&format!("linux/{arch}"), &same), ("linux/riscv64", &other)],
    );

    let berthd = Berthd::start();
    let from = format!("{}/t/annotated:1", source.host());
    berthd.docker_ok(&["pull", &from]);

    // To Debian's docker-registry, twice (the second mounts every blob
    // from the first repository): the source's digest both times.
    let target = Registry::distribution();
    for repo in ["copy/one", "copy/two"] {
        let dst = format!("{}/{repo}:1", target.host());
        berthd.docker_ok(&["tag", &from, &dst]);
        let out = berthd.docker_ok(&["push", &dst]);
        assert_eq!(pushed_digest(&out), original.manifest_digest, "{out}");
        assert_eq!(
            head_manifest(&target.host(), repo, &original.manifest_digest),
            "200",
            "{repo}"
        );
        let digests = berthd.docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &dst,
        ]);
        assert!(
            digests.contains(&format!(
                "{}/{repo}@{}",
                target.host(),
                original.manifest_digest
            )),
            "{digests}"
        );
    }
    // What was pushed pulls back from there as the same image.
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &from]);
    let back = format!("{}/copy/two@{}", target.host(), original.manifest_digest);
    berthd.docker_ok(&["rmi", "-f", id.trim()]);
    berthd.docker_ok(&["pull", &back]);
    assert_eq!(
        berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &back]),
        id
    );

    // Pulled through an index: the platform's manifest goes up unchanged
    // (the index names platforms this host does not have).
    let multi = format!("{}/t/multi:1", source.host());
    let out = berthd.docker_ok(&["pull", &multi]);
    assert!(out.contains(&index), "{out}");
    let dst = format!("{}/copy/multi:1", target.host());
    berthd.docker_ok(&["tag", &multi, &dst]);
    let out = berthd.docker_ok(&["push", &dst]);
    assert_eq!(pushed_digest(&out), original.manifest_digest, "{out}");
}

/// A blob written into the OCI layout at `dir`; its digest.
fn oci_blob(dir: &Path, bytes: &[u8]) -> String {
    use berth_tests::fake_registry::sha256;
    let digest = sha256(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("create blobs dir");
    std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).expect("write blob");
    digest
}

/// An image manifest in an OCI layout: its digest and bytes.
struct OciManifest {
    digest: String,
    bytes: Vec<u8>,
}

/// An image for `architecture` of `layers` in the OCI layout at `dir`.
fn oci_image(
    dir: &Path,
    architecture: &str,
    layers: &[&berth_tests::fake_registry::Layer],
) -> OciManifest {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    }))
    .expect("config json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": oci_blob(dir, &config),
            "size": config.len(),
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": oci_blob(dir, &l.data),
            "size": l.data.len(),
        })).collect::<Vec<_>>(),
    }))
    .expect("manifest json");
    OciManifest {
        digest: oci_blob(dir, &manifest),
        bytes: manifest,
    }
}

/// The index entry of image `m` for `os`/`architecture`.
fn index_entry(m: &OciManifest, os: &str, architecture: &str) -> serde_json::Value {
    serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m.digest,
        "size": m.bytes.len(),
        "platform": {"architecture": architecture, "os": os},
    })
}

/// An OCI layout at `dir` whose tag `1` is an index of `entries`
/// (architecture, image; all linux); the index's digest.
fn oci_index(dir: &Path, entries: &[(&str, &OciManifest)]) -> String {
    oci_index_of(
        dir,
        entries
            .iter()
            .map(|(arch, m)| index_entry(m, "linux", arch))
            .collect(),
    )
}

/// An OCI layout at `dir` whose tag `1` is an index of `manifests`
/// (descriptors); the index's digest.
fn oci_index_of(dir: &Path, manifests: Vec<serde_json::Value>) -> String {
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("index json");
    let digest = oci_blob(dir, &index);
    let layout = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(dir.join("index.json"), layout.to_string()).expect("write index.json");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    digest
}

/// `skopeo <args>`, which must succeed; its stdout as bytes.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(args);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run skopeo");
    assert!(out.status.success(), "skopeo {args:?}: {}", describe(&out));
    out.stdout
}

/// What `host/name` (a tag or a digest reference) serves as a manifest.
fn raw_manifest(reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])
}

/// An index of two platforms (this machine's and another) sharing their
/// base layer, in a registry.
struct TwoPlatforms {
    /// `host/src/multi:1`, the index.
    src: String,
    index: String,
    host_arch: &'static str,
    other_arch: &'static str,
    host_image: OciManifest,
    other_image: OciManifest,
}

/// Puts a [`TwoPlatforms`] index into `registry` as `src/multi:1` (copied
/// there by skopeo from an OCI layout, digests kept).
fn two_platform_index(registry: &Registry) -> TwoPlatforms {
    use berth_tests::fake_registry::{layer, LayerCompression};
    let (host_arch, other_arch) = match std::env::consts::ARCH {
        "aarch64" => ("arm64", "amd64"),
        _ => ("amd64", "arm64"),
    };
    let layout = tempfile::tempdir().expect("tempdir");
    let shared = layer(&[("shared", b"both platforms")], LayerCompression::Gzip);
    let own_host = layer(&[("own", b"host platform")], LayerCompression::Gzip);
    let own_other = layer(&[("own", b"other platform")], LayerCompression::Gzip);
    let host_image = oci_image(layout.path(), host_arch, &[&shared, &own_host]);
    let other_image = oci_image(layout.path(), other_arch, &[&shared, &own_other]);
    let index = oci_index(
        layout.path(),
        &[(host_arch, &host_image), (other_arch, &other_image)],
    );
    let src = format!("{}/src/multi:1", registry.host());
    push_layout(layout.path(), &src, &index);
    TwoPlatforms {
        src,
        index,
        host_arch,
        other_arch,
        host_image,
        other_image,
    }
}

/// The image ID (config digest) `manifest` names.
fn config_of(manifest: &OciManifest) -> String {
    serde_json::from_slice::<serde_json::Value>(&manifest.bytes).expect("manifest")["config"]
        ["digest"]
        .as_str()
        .expect("config digest")
        .to_string()
}

fn architecture(daemon: &impl DockerApi, image: &str) -> String {
    daemon
        .docker_ok(&["image", "inspect", "--format", "{{.Architecture}}", image])
        .trim()
        .to_string()
}

#[test]
fn an_index_is_pushed_whole_when_every_platform_is_here() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    use berth_tests::fake_registry::sha256;
    let source = Registry::distribution();
    let TwoPlatforms {
        src,
        index,
        host_arch,
        other_arch,
        host_image,
        other_image,
    } = two_platform_index(&source);

    let berthd = Berthd::start();
    let out = berthd.docker_ok(&["pull", &src]);
    assert!(out.contains(&format!("Digest: {index}")), "{out}");

    // Only the host's platform here: its manifest alone goes up, and the
    // output says why the index did not.
    let one = format!("{}/copy/one:1", source.host());
    berthd.docker_ok(&["tag", &src, &one]);
    let out = berthd.docker_ok(&["push", &one]);
    assert_eq!(pushed_digest(&out), host_image.digest, "{out}");
    assert!(
        out.contains(&format!("The image index {index}"))
            && out.contains(&format!("linux/{other_arch} is not here")),
        "{out}"
    );
    assert_eq!(raw_manifest(&one), host_image.bytes);

    // The other platform too: a second image; the tag names the last pulled.
    let out = berthd.docker_ok(&["pull", "--platform", &format!("linux/{other_arch}"), &src]);
    assert!(out.contains(&format!("Digest: {index}")), "{out}");
    assert_eq!(architecture(&berthd, &src), other_arch);
    assert_eq!(architecture(&berthd, &config_of(&host_image)), host_arch);

    // Now the whole index goes up: to another repository of the source
    // registry (blobs mounted from where they came from), and to another
    // registry (uploaded); the tag resolves to the source's index digest,
    // every platform's manifest by its own.
    let target = Registry::distribution();
    for (dst, moved, not) in [
        (
            format!("{}/copy/multi:1", source.host()),
            "Mounted from",
            "Pushed",
        ),
        (
            format!("{}/copy/multi:1", target.host()),
            "Pushed",
            "Mounted",
        ),
    ] {
        berthd.docker_ok(&["tag", &src, &dst]);
        let out = berthd.docker_ok(&["push", &dst]);
        assert_eq!(pushed_digest(&out), index, "{out}");
        assert!(out.contains(moved) && !out.contains(not), "{out}");
        assert!(!out.contains("was not pushed"), "{out}");
        assert_eq!(sha256(&raw_manifest(&dst)), index);
        let repo = dst.trim_end_matches(":1");
        for image in [&host_image, &other_image] {
            assert_eq!(
                raw_manifest(&format!("{repo}@{}", image.digest)),
                image.bytes
            );
        }
        // Pushed again: every blob is there already.
        let again = berthd.docker_ok(&["push", &dst]);
        assert_eq!(pushed_digest(&again), index, "{again}");
        assert!(!again.contains("Pushed"), "{again}");
    }

    // `--platform`: that platform's manifest alone, also when the tag
    // names the other platform's image of the index.
    for arch in [host_arch, other_arch] {
        let dst = format!("{}/only/{arch}:1", target.host());
        berthd.docker_ok(&["tag", &src, &dst]);
        let out = berthd.docker_ok(&["push", "--platform", &format!("linux/{arch}"), &dst]);
        let want = if arch == host_arch {
            &host_image
        } else {
            &other_image
        };
        assert_eq!(pushed_digest(&out), want.digest, "{out}");
        assert_eq!(raw_manifest(&dst), want.bytes);
    }
    let dst = format!("{}/only/none:1", target.host());
    berthd.docker_ok(&["tag", &src, &dst]);
    let out = berthd.docker(&["push", "--platform", "linux/s390x", &dst]);
    assert!(!out.status.success(), "{}", describe(&out));
    // Refused before anything is sent, as an error response.
    assert!(
        text(&out.stderr).contains("Error response from daemon")
            && text(&out.stderr).contains("no linux/s390x image here")
            && !text(&out.stdout).contains("The push refers to"),
        "{}",
        describe(&out)
    );
    let mut command = Command::new("skopeo");
    command.args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dst}"),
    ]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run skopeo");
    assert!(!out.status.success(), "{}", describe(&out));
}

#[test]
fn berth_pulls_every_platform_of_an_index_and_pushes_one() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    use berth_tests::fake_registry::sha256;
    let source = Registry::distribution();
    let fixture = two_platform_index(&source);
    let berthd = Berthd::start();
    let berth = |args: &[&str]| {
        let mut command = berthd.cli_command(&workspace_binary("berth"));
        command.args(args);
        let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth");
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        text(&out.stdout)
    };

    // Both platforms' images, the tag on this machine's.
    let out = berth(&["pull", "--all-platforms", &fixture.src]);
    assert!(out.contains(&format!("Digest: {}", fixture.index)), "{out}");
    assert_eq!(architecture(&berthd, &fixture.src), fixture.host_arch);
    assert_eq!(
        architecture(&berthd, &config_of(&fixture.other_image)),
        fixture.other_arch
    );

    // So the whole index can go up at once.
    let target = Registry::distribution();
    let dst = format!("{}/copy/all:1", target.host());
    berthd.docker_ok(&["tag", &fixture.src, &dst]);
    let out = berthd.docker_ok(&["push", &dst]);
    assert_eq!(pushed_digest(&out), fixture.index, "{out}");
    assert_eq!(sha256(&raw_manifest(&dst)), fixture.index);

    // `berth push --platform`: that platform's manifest alone.
    let dst = format!("{}/only/other:1", target.host());
    berthd.docker_ok(&["tag", &fixture.src, &dst]);
    let platform = format!("linux/{}", fixture.other_arch);
    let out = berth(&["push", "--platform", &platform, &dst]);
    assert_eq!(pushed_digest(&out), fixture.other_image.digest, "{out}");
    assert_eq!(raw_manifest(&dst), fixture.other_image.bytes);

    // An image that is no index: --all-platforms pulls it as it is.
    let single = format!("{}/src/multi@{}", source.host(), fixture.host_image.digest);
    berthd.docker_ok(&["rmi", "-f", &config_of(&fixture.host_image)]);
    berth(&["pull", "--all-platforms", &single]);
    assert_eq!(architecture(&berthd, &single), fixture.host_arch);
}

#[test]
fn an_index_with_attestations_is_pushed_as_the_platform_manifest() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    use berth_tests::fake_registry::{layer, LayerCompression};
    let host_arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    // This machine's image and an attestation of it (an image manifest for
    // the unknown platform, in-toto layers), as buildx makes them.
    let layout = tempfile::tempdir().expect("tempdir");
    let image = oci_image(
        layout.path(),
        host_arch,
        &[&layer(&[("a", b"attested")], LayerCompression::Gzip)],
    );
    let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#;
    let config = b"{}";
    let attestation = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": oci_blob(layout.path(), config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.in-toto+json",
            "digest": oci_blob(layout.path(), statement),
            "size": statement.len(),
            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
        }],
    }))
    .expect("attestation json");
    let attestation = OciManifest {
        digest: oci_blob(layout.path(), &attestation),
        bytes: attestation,
    };
    let mut attestation_entry = index_entry(&attestation, "unknown", "unknown");
    attestation_entry["annotations"] = serde_json::json!({
        "vnd.docker.reference.digest": image.digest,
        "vnd.docker.reference.type": "attestation-manifest",
    });
    let index = oci_index_of(
        layout.path(),
        vec![index_entry(&image, "linux", host_arch), attestation_entry],
    );
    let source = Registry::distribution();
    let src = format!("{}/src/attested:1", source.host());
    push_layout(layout.path(), &src, &index);

    // Every platform pulled, but the attestation is no image: the push
    // sends this platform's manifest and says why not the index.
    let berthd = Berthd::start();
    let mut command = berthd.cli_command(&workspace_binary("berth"));
    command.args(["pull", "--all-platforms", &src]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth");
    assert!(out.status.success(), "{}", describe(&out));
    let target = Registry::distribution();
    let dst = format!("{}/copy/attested:1", target.host());
    berthd.docker_ok(&["tag", &src, &dst]);
    let out = berthd.docker_ok(&["push", &dst]);
    assert_eq!(pushed_digest(&out), image.digest, "{out}");
    assert!(
        out.contains(&format!("The image index {index}"))
            && out.contains("it lists 1 entry no pull keeps (attestations"),
        "{out}"
    );
    assert_eq!(raw_manifest(&dst), image.bytes);
}

/// Copies the index tagged `1` in the OCI layout at `layout` to `dest`
/// (every platform, digests kept) and checks the registry serves it as
/// `index`.
fn push_layout(layout: &Path, dest: &str, index: &str) {
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{dest}"),
    ]);
    assert_eq!(
        berth_tests::fake_registry::sha256(&raw_manifest(dest)),
        index
    );
}
