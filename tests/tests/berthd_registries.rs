#![forbid(unsafe_code)]
//! berthd's registry settings, driven by the docker CLI and `berth` against
//! Debian's docker-registry (distribution 2.8) on loopback:
//! `insecure-registries` and `registry-mirrors` (shown by `docker info`,
//! mirrors tried before the origin), certs.d CAs and client certificates
//! (mutual TLS), `docker login`/`logout` and `berth login`/`logout` with
//! config.json and a credential helper; a login's identity token (refresh
//! token) used by later pulls.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berthd::{berthd_command, free_loopback_port, Berthd};
use berth_tests::host::{assert_success, describe, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout, workspace_binary};

const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !Path::new(DOCKER_REGISTRY).exists() {
        eprintln!("skipped: needs root and {DOCKER_REGISTRY}");
        return false;
    }
    true
}

/// What a docker-registry serves with.
#[derive(Default)]
struct RegistryOptions<'a> {
    /// Certificate and key: HTTPS instead of plain HTTP.
    tls: Option<(&'a Path, &'a Path)>,
    /// Clients must show a certificate this CA signed.
    client_ca: Option<&'a Path>,
    /// Basic auth from this bcrypt htpasswd file.
    htpasswd: Option<&'a Path>,
}

/// Debian's docker-registry on a loopback port with its own config and
/// storage; dropping it kills the process (by the PID this guard started)
/// and removes its directory.
struct DockerRegistry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl DockerRegistry {
    fn start(options: RegistryOptions<'_>) -> DockerRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_loopback_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("root").display()
        );
        if let Some((cert, key)) = options.tls {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
            if let Some(ca) = options.client_ca {
                config += &format!("    clientcas:\n      - {}\n", ca.display());
            }
        }
        if let Some(htpasswd) = options.htpasswd {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config.yml");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let mut registry = DockerRegistry {
            child: Some(child),
            port,
            dir,
        };
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if let Some(Ok(Some(status))) = registry.child.as_mut().map(Child::try_wait) {
                panic!("docker-registry exited with {status}: {}", registry.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "docker-registry not listening: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The tags of `repository` this registry holds (plain HTTP, no auth).
    fn tags(&self, repository: &str) -> String {
        let mut curl = Command::new("curl");
        curl.arg("-s")
            .arg(format!("http://{}/v2/{repository}/tags/list", self.host()));
        let out = output_with_timeout(&mut curl, CLI_TIMEOUT).expect("run curl");
        text(&out.stdout)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `command` with `input` on its stdin, killed after [`CLI_TIMEOUT`].
fn output_with_stdin(command: &mut Command, input: &str) -> Output {
    let mut stdout = tempfile::tempfile().expect("tempfile");
    let mut stderr = tempfile::tempfile().expect("tempfile");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(stdout.try_clone().expect("clone"))
        .stderr(stderr.try_clone().expect("clone"))
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |file: &mut std::fs::File| {
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_to_end(&mut data).expect("read");
        data
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

fn image_id(berthd: &Berthd, image: &str) -> String {
    berthd
        .docker_ok(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// busybox imported into berthd as `image`, with `env` so that images
/// made with other values differ; returns its ID.
fn import_busybox(berthd: &Berthd, scratch: &Path, image: &str, env: &str) -> String {
    let tar = make_busybox_rootfs_tar(scratch);
    berthd.docker_ok(&[
        "import",
        "--change",
        &format!("ENV MARK={env}"),
        &tar.to_string_lossy(),
        image,
    ]);
    image_id(berthd, image)
}

/// Runs `script` with sh in `dir` (openssl, python3), which must succeed.
fn sh(dir: &Path, script: &str) {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script).current_dir(dir);
    let out = output_with_timeout(&mut sh, CLI_TIMEOUT).expect("run sh");
    assert_success(&out, script);
}

/// In `dir`: a CA (`ca.pem`), a server certificate it signed for IP
/// 127.0.0.1 (`server.pem`, `server.key`), a client certificate it signed
/// (`client.pem`, `client.key`), and a self-signed server certificate
/// (`self.pem`, `self.key`).
fn make_certificates(dir: &Path) {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    sh(
        dir,
        &format!(
            "set -e
            openssl req -x509 {ec} -days 1 -subj '/CN=berth test CA' -keyout ca.key -out ca.pem 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > server.ext
            openssl req {ec} -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
            openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile server.ext -out server.pem 2>/dev/null
            printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext
            openssl req {ec} -subj /CN=berth-client -keyout client.key -out client.csr 2>/dev/null
            openssl x509 -req -days 1 -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile client.ext -out client.pem 2>/dev/null
            openssl req -x509 {ec} -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout self.key -out self.pem 2>/dev/null"
        ),
    );
}

/// An htpasswd file with a bcrypt entry for `user`, made with python3's crypt(3).
fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let script = "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
    let mut command = Command::new("/usr/bin/python3");
    command.args(["-W", "ignore", "-c", script, password]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run python3");
    let hash = assert_success(&out, "python3 crypt").trim().to_owned();
    std::fs::write(path, format!("{user}:{hash}\n")).expect("write htpasswd");
}

#[test]
fn registry_settings_show_in_docker_info_and_bad_ones_stop_berthd() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let berthd = Berthd::builder()
        .daemon_json(
            r#"{"insecure-registries": ["10.1.0.0/16", "reg.example:5000"],
                "registry-mirrors": {"docker.io": ["https://m1.example"],
                                     "127.0.0.1:5000": ["http://127.0.0.1:5001/"]}}"#,
        )
        .start();
    let info = berthd.docker_ok(&["info"]);
    let insecure = info
        .split("Insecure Registries:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Insecure Registries in docker info:\n{info}"));
    for entry in ["reg.example:5000", "::1/128", "127.0.0.0/8", "10.1.0.0/16"] {
        assert!(
            insecure.contains(&format!("  {entry}\n")),
            "{entry}:\n{info}"
        );
    }
    assert!(
        info.contains("Registry Mirrors:\n  https://m1.example/\n"),
        "{info}"
    );
    let mut berth = berthd.cli_command(&workspace_binary("berth"));
    berth.arg("info");
    let out = output_with_timeout(&mut berth, CLI_TIMEOUT).expect("berth info");
    let shown = assert_success(&out, "berth info");
    for lines in [
        "Insecure Registries:\n  reg.example:5000\n  ::1/128\n  127.0.0.0/8\n  10.1.0.0/16\n",
        "Registry Mirrors:\n  https://m1.example/\n",
        "Registry Mirrors of 127.0.0.1:5000:\n  http://127.0.0.1:5001/\n",
    ] {
        assert!(shown.contains(lines), "{lines}\n{shown}");
    }
    let config = berthd.docker_ok(&["info", "--format", "{{json .RegistryConfig}}"]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("RegistryConfig JSON");
    assert_eq!(
        config["IndexConfigs"]["127.0.0.1:5000"]["Mirrors"],
        serde_json::json!(["http://127.0.0.1:5001/"]),
        "{config}"
    );
    assert_eq!(
        config["IndexConfigs"]["docker.io"]["Official"], true,
        "{config}"
    );
    assert_eq!(
        config["IndexConfigs"]["reg.example:5000"]["Secure"], false,
        "{config}"
    );

    // A bad value stops berthd at start, naming the value.
    let dir = tempfile::tempdir().expect("tempdir");
    for (json, says) in [
        (
            r#"{"insecure-registries": ["10.0.0.0/33"]}"#,
            "insecure registry \"10.0.0.0/33\" is not a valid CIDR",
        ),
        (
            r#"{"registry-mirrors": ["ftp://m.example"]}"#,
            "invalid mirror \"ftp://m.example\": expected an http:// or https:// URL",
        ),
        (
            r#"{"registry-mirrors": {"127.0.0.1:5000": ["https://u:p@m.example"]}}"#,
            "a user name or password is not allowed",
        ),
    ] {
        let mut command = berthd_command(dir.path());
        std::fs::write(dir.path().join("daemon.json"), json).expect("write daemon.json");
        let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berthd");
        assert!(!out.status.success(), "{json}: {}", describe(&out));
        assert!(
            text(&out.stderr).contains(says),
            "{json}: {}",
            describe(&out)
        );
        assert!(
            !dir.path().join("data").exists(),
            "berthd made its data root before refusing {json}"
        );
    }
    let mut command = berthd_command(dir.path());
    command.args(["--insecure-registry", "http://reg.example"]);
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berthd");
    assert!(
        text(&out.stderr).contains("should not contain '://'"),
        "{}",
        describe(&out)
    );
}

#[test]
fn pulls_try_mirrors_before_the_origin_and_pushes_go_to_the_origin() {
    if !can_run() {
        return;
    }
    let origin = DockerRegistry::start(RegistryOptions::default());
    let mut mirror = DockerRegistry::start(RegistryOptions::default());
    // A mirror nothing listens on comes first: it is skipped.
    let dead = format!("127.0.0.1:{}", free_loopback_port());
    let berthd = Berthd::builder()
        .args([
            "--registry-mirror".to_string(),
            format!("{}=http://{dead}", origin.host()),
            "--registry-mirror".to_string(),
            format!("{}=http://{}/", origin.host(), mirror.host()),
        ])
        .start();
    let scratch = tempfile::tempdir().expect("tempdir");

    // The origin has m/bb:1; the mirror has m/bb:only-mirror, another image.
    let at_origin = format!("{}/m/bb:1", origin.host());
    let origin_id = import_busybox(&berthd, scratch.path(), &at_origin, "origin");
    berthd.docker_ok(&["push", &at_origin]);
    let in_mirror = format!("{}/m/bb:only-mirror", mirror.host());
    let mirror_id = import_busybox(&berthd, scratch.path(), &in_mirror, "mirror");
    assert_ne!(origin_id, mirror_id);
    berthd.docker_ok(&["push", &in_mirror]);
    berthd.docker_ok(&["rmi", "-f", &origin_id, &mirror_id]);

    // Only the mirror has it: the pull of the origin's name comes from there.
    let mirrored = format!("{}/m/bb:only-mirror", origin.host());
    let out = berthd.docker_ok(&["pull", &mirrored]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(image_id(&berthd, &mirrored), mirror_id);
    assert!(
        !origin.tags("m/bb").contains("only-mirror"),
        "{}",
        origin.tags("m/bb")
    );

    // The mirror lacks it: the origin serves it.
    berthd.docker_ok(&["pull", &at_origin]);
    assert_eq!(image_id(&berthd, &at_origin), origin_id);

    // A push goes to the origin, never to a mirror.
    let pushed = format!("{}/m/bb:pushed", origin.host());
    berthd.docker_ok(&["tag", &at_origin, &pushed]);
    berthd.docker_ok(&["push", &pushed]);
    assert!(
        origin.tags("m/bb").contains("\"pushed\""),
        "{}",
        origin.tags("m/bb")
    );
    assert!(
        !mirror.tags("m/bb").contains("pushed"),
        "{}",
        mirror.tags("m/bb")
    );

    // With every mirror down the origin still serves pulls.
    mirror.stop();
    berthd.docker_ok(&["rmi", "-f", &origin_id]);
    berthd.docker_ok(&["pull", &at_origin]);
    assert_eq!(image_id(&berthd, &at_origin), origin_id);
    let out = berthd.docker(&["pull", &mirrored]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("manifest unknown"),
        "{}",
        describe(&out)
    );
}

#[test]
fn certs_d_client_certificates_and_insecure_self_signed_registries() {
    if !can_run() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let pki = scratch.path();
    make_certificates(pki);

    // Mutual TLS: the registry wants a client certificate its CA signed.
    let mtls = DockerRegistry::start(RegistryOptions {
        tls: Some((&pki.join("server.pem"), &pki.join("server.key"))),
        client_ca: Some(&pki.join("ca.pem")),
        ..RegistryOptions::default()
    });
    let certs_d = scratch.path().join("certs.d");
    let berthd = Berthd::builder()
        .arg("--registry-certs-dir")
        .arg(certs_d.to_string_lossy())
        .start();
    let image = format!("{}/mtls/bb:1", mtls.host());
    let id = import_busybox(&berthd, scratch.path(), &image, "mtls");
    let out = berthd.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "push, CA unknown: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        describe(&out)
    );

    let host_dir = certs_d.join(mtls.host());
    std::fs::create_dir_all(&host_dir).expect("create certs.d dir");
    std::fs::copy(pki.join("ca.pem"), host_dir.join("ca.crt")).expect("ca.crt");
    let out = berthd.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "push without a client certificate: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("received fatal alert: BadCertificate"),
        "{}",
        describe(&out)
    );

    std::fs::copy(pki.join("client.pem"), host_dir.join("client.cert")).expect("client.cert");
    let out = berthd.docker(&["push", &image]);
    assert!(
        !out.status.success(),
        "a .cert without its .key: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("missing key"),
        "{}",
        describe(&out)
    );
    std::fs::copy(pki.join("client.key"), host_dir.join("client.key")).expect("client.key");
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&berthd, &image), id);

    // A self-signed registry: refused, until it is listed as insecure.
    let self_signed = DockerRegistry::start(RegistryOptions {
        tls: Some((&pki.join("self.pem"), &pki.join("self.key"))),
        ..RegistryOptions::default()
    });
    let image = format!("{}/self/bb:1", self_signed.host());
    berthd.docker_ok(&["tag", &id, &image]);
    let out = berthd.docker(&["push", &image]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("certificate"),
        "{}",
        describe(&out)
    );
    drop(berthd);

    let berthd = Berthd::builder()
        .args(["--insecure-registry", &self_signed.host()])
        .start();
    let id = import_busybox(&berthd, scratch.path(), &image, "mtls");
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&berthd, &image), id);
    // The listed registry still shows in docker info.
    let info = berthd.docker_ok(&["info"]);
    assert!(
        info.contains(&format!("  {}\n", self_signed.host())),
        "{info}"
    );
}

/// A docker-registry that wants `user` / `s3cret` (htpasswd, basic auth).
fn registry_with_password(scratch: &Path) -> DockerRegistry {
    let htpasswd = scratch.join("htpasswd");
    write_htpasswd(&htpasswd, "user", "s3cret");
    DockerRegistry::start(RegistryOptions {
        htpasswd: Some(&htpasswd),
        ..RegistryOptions::default()
    })
}

fn cli_config(berthd: &Berthd) -> serde_json::Value {
    let path = berthd.dir().join("cli/config.json");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&data).expect("config.json is JSON")
}

#[test]
fn docker_login_checks_credentials_with_the_registry() {
    if !can_run() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = registry_with_password(scratch.path());
    let berthd = Berthd::start();
    let host = registry.host();
    let image = format!("{host}/auth/bb:1");
    let id = import_busybox(&berthd, scratch.path(), &image, "auth");
    let config_dir = berthd.dir().join("cli");
    let config_arg = config_dir.to_string_lossy().to_string();

    let login = |password: &str| {
        let mut command = berthd.docker_command();
        command.args([
            "--config",
            &config_arg,
            "login",
            "-u",
            "user",
            "--password-stdin",
            &host,
        ]);
        output_with_stdin(&mut command, &format!("{password}\n"))
    };
    let out = login("wrong");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "Error response from daemon: login attempt to http://{host}/v2/ failed with status: 401 Unauthorized"
        )),
        "{}",
        describe(&out)
    );
    assert!(
        !config_dir.join("config.json").exists() || cli_config(&berthd)["auths"][&host].is_null()
    );

    let out = login("s3cret");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("Login Succeeded"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        cli_config(&berthd)["auths"][&host]["auth"],
        "dXNlcjpzM2NyZXQ=",
        "{}",
        cli_config(&berthd)
    );
    berthd.docker_ok(&["push", &image]);
    berthd.docker_ok(&["rmi", &image]);
    berthd.docker_ok(&["pull", &image]);
    assert_eq!(image_id(&berthd, &image), id);

    let out = berthd.docker_ok(&["logout", &host]);
    assert!(
        out.contains(&format!("Removing login credentials for {host}")),
        "{out}"
    );
    let out = berthd.docker(&["pull", &image]);
    assert!(
        !out.status.success(),
        "pull after logout: {}",
        describe(&out)
    );

    // A registry nobody listens on.
    let nowhere = format!("127.0.0.1:{}", free_loopback_port());
    let mut command = berthd.docker_command();
    command.args(["login", "-u", "user", "--password-stdin", &nowhere]);
    let out = output_with_stdin(&mut command, "s3cret\n");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&format!(
            "Error response from daemon: Get \"http://{nowhere}/v2/\""
        )),
        "{}",
        describe(&out)
    );
}

/// A credential helper for the docker protocol that keeps one entry in `store`.
fn write_credential_helper(bin: &Path, store: &Path) {
    std::fs::create_dir_all(bin).expect("create bin");
    let script = format!(
        r#"#!/bin/sh
store={store}
case "$1" in
store) cat > "$store" ;;
get) read -r server; if [ -f "$store" ] && grep -q "\"$server\"" "$store"; then cat "$store"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase) read -r server; rm -f "$store" ;;
*) echo "unknown action $1" >&2; exit 2 ;;
esac
"#,
        store = store.display()
    );
    let path = bin.join("docker-credential-test");
    std::fs::write(&path, script).expect("write helper");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod helper");
}

#[test]
fn berth_login_keeps_credentials_for_pull_and_push() {
    if !can_run() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let registry = registry_with_password(scratch.path());
    let berthd = Berthd::start();
    let host = registry.host();
    let image = format!("{host}/berth/bb:1");
    let id = import_busybox(&berthd, scratch.path(), &image, "berth");
    let berth = |args: &[&str]| {
        let mut command = berthd.cli_command(&workspace_binary("berth"));
        command.args(args);
        command
    };
    let run = |args: &[&str]| output_with_timeout(&mut berth(args), CLI_TIMEOUT).expect("berth");

    let out = run(&["push", &image]);
    assert!(
        !out.status.success(),
        "push before login: {}",
        describe(&out)
    );

    let out = run(&["login", "-u", "user", "-p", "wrong", &host]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("401 Unauthorized"),
        "{}",
        describe(&out)
    );
    let out = output_with_stdin(
        &mut berth(&["login", "-u", "user", "--password-stdin", &host]),
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout).trim(), "Login Succeeded");
    assert_eq!(
        cli_config(&berthd)["auths"][&host]["auth"],
        "dXNlcjpzM2NyZXQ="
    );
    let out = run(&["push", &image]);
    assert!(out.status.success(), "{}", describe(&out));
    let pushed = text(&out.stdout);
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    berthd.docker_ok(&["rmi", &image]);
    let out = run(&["pull", &image]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).trim_end().ends_with(&image),
        "{}",
        describe(&out)
    );
    assert_eq!(image_id(&berthd, &image), id);
    // The docker CLI reads what berth wrote.
    berthd.docker_ok(&["push", &image]);

    let out = run(&["logout", &host]);
    assert!(
        text(&out.stdout).contains(&format!("Removing login credentials for {host}")),
        "{}",
        describe(&out)
    );
    assert!(cli_config(&berthd)["auths"][&host].is_null());
    let out = run(&["logout", &host]);
    assert!(
        text(&out.stdout).contains(&format!("Not logged in to {host}")),
        "{}",
        describe(&out)
    );

    // A credential helper (credsStore), found on PATH, with --config.
    let bin = scratch.path().join("bin");
    let store = scratch.path().join("helper-store.json");
    write_credential_helper(&bin, &store);
    let other_config = scratch.path().join("other-config");
    std::fs::create_dir_all(&other_config).expect("mkdir");
    std::fs::write(
        other_config.join("config.json"),
        r#"{"credsStore": "test"}"#,
    )
    .expect("write config.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config_arg = other_config.to_string_lossy().to_string();
    let with_helper = |args: &[&str]| {
        let mut command = berth(&[]);
        command
            .env("PATH", &path)
            .arg("--config")
            .arg(&config_arg)
            .args(args);
        command
    };
    let out = output_with_stdin(
        &mut with_helper(&["login", "-u", "user", "--password-stdin", &host]),
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    let kept = std::fs::read_to_string(&store).expect("the helper stored the credentials");
    let kept: serde_json::Value = serde_json::from_str(&kept).expect("helper JSON");
    assert_eq!(
        kept,
        serde_json::json!({"ServerURL": host, "Username": "user", "Secret": "s3cret"})
    );
    let written = std::fs::read_to_string(other_config.join("config.json")).expect("config");
    assert!(
        !written.contains("auth\""),
        "the password leaked into config.json: {written}"
    );
    berthd.docker_ok(&["rmi", &image]);
    let out = output_with_timeout(&mut with_helper(&["pull", &image]), CLI_TIMEOUT).expect("pull");
    assert!(
        out.status.success(),
        "pull with the helper's credentials: {}",
        describe(&out)
    );
    let out =
        output_with_timeout(&mut with_helper(&["logout", &host]), CLI_TIMEOUT).expect("logout");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!store.exists(), "logout did not erase the helper's entry");
    let out = output_with_timeout(&mut with_helper(&["push", &image]), CLI_TIMEOUT).expect("push");
    assert!(
        !out.status.success(),
        "push after logout: {}",
        describe(&out)
    );

    // credHelpers names the helper of one registry.
    std::fs::write(
        other_config.join("config.json"),
        format!(r#"{{"credHelpers": {{"{host}": "test"}}}}"#),
    )
    .expect("write config.json");
    let out = output_with_stdin(
        &mut with_helper(&["login", "-u", "user", "--password-stdin", &host]),
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(store.exists(), "credHelpers: the helper stored nothing");
    let out = output_with_timeout(&mut with_helper(&["push", &image]), CLI_TIMEOUT).expect("push");
    assert!(
        out.status.success(),
        "push with credHelpers: {}",
        describe(&out)
    );
}

#[test]
fn login_keeps_the_identity_token_and_pulls_refresh_with_it() {
    if !can_run() {
        return;
    }
    use berth_tests::fake_registry::{layer, FakeRegistry, LayerCompression, TokenPolicy};
    // A token server that takes user:s3cret and hands out refresh tokens.
    let registry = FakeRegistry::start();
    registry.require_tokens(TokenPolicy {
        basic: Some("Basic dXNlcjpzM2NyZXQ="),
        ..TokenPolicy::default()
    });
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let pushed = registry.add_image(
        "t/ident",
        "1",
        arch,
        &[layer(&[("f", b"identity")], LayerCompression::Gzip)],
    );
    let berthd = Berthd::start();
    let host = registry.host();
    let login = |password: &str| {
        let mut command = berthd.docker_command();
        command.args(["login", "-u", "user", "--password-stdin", &host]);
        output_with_stdin(&mut command, &format!("{password}\n"))
    };
    let out = login("wrong");
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("incorrect username or password"),
        "{}",
        describe(&out)
    );
    let out = login("s3cret");
    assert!(out.status.success(), "{}", describe(&out));
    // An OAuth2 password grant that asks for a refresh token.
    assert_eq!(
        registry.token_grants(),
        vec!["password user offline".to_string()]
    );
    // The CLI keeps the identity token instead of the password.
    let entry = &cli_config(&berthd)["auths"][&host];
    assert_eq!(entry["identitytoken"], "refresh-1", "{entry}");
    assert!(
        !entry.to_string().contains("s3cret") && !entry.to_string().contains("czNjcmV0"),
        "{entry}"
    );

    // A pull gets its token with the identity token (OAuth2 POST), not
    // the password, and runs.
    let image = format!("{host}/t/ident:1");
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        registry.token_grants(),
        vec![
            "password user offline".to_string(),
            "refresh_token refresh-1".to_string()
        ]
    );
    assert_eq!(
        registry.token_requests().last().map(String::as_str),
        Some("repository:t/ident:pull")
    );
    let id = berthd.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_eq!(id.trim(), pushed.config_digest);

    // berth login with a credential helper keeps the identity token there,
    // as the secret of the user <token>, and berth pull sends it.
    berthd.docker_ok(&["rmi", &image]);
    let scratch = tempfile::tempdir().expect("tempdir");
    let bin = scratch.path().join("bin");
    let store = scratch.path().join("helper-store.json");
    write_credential_helper(&bin, &store);
    let config_dir = scratch.path().join("config");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(config_dir.join("config.json"), r#"{"credsStore": "test"}"#)
        .expect("write config.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let berth = |args: &[&str]| {
        let mut command = berthd.cli_command(&workspace_binary("berth"));
        command
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &config_dir)
            .args(args);
        command
    };
    let out = output_with_stdin(
        &mut berth(&["login", "-u", "user", "--password-stdin", &host]),
        "s3cret\n",
    );
    assert!(out.status.success(), "{}", describe(&out));
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&store).expect("helper store"))
            .expect("helper JSON");
    assert_eq!(kept["Username"], "<token>", "{kept}");
    let secret = kept["Secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("refresh-"), "{kept}");
    let out = output_with_timeout(&mut berth(&["pull", &image]), CLI_TIMEOUT).expect("pull");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        registry.token_grants().last(),
        Some(&format!("refresh_token {secret}"))
    );
}

#[test]
fn login_falls_back_to_a_get_where_the_token_server_takes_no_post() {
    if !can_run() {
        return;
    }
    use berth_tests::fake_registry::{FakeRegistry, TokenPolicy};
    let berthd = Berthd::start();
    for status in [404, 405] {
        let registry = FakeRegistry::start();
        registry.require_tokens(TokenPolicy {
            basic: Some("Basic dXNlcjpzM2NyZXQ="),
            refuse_password_grant: Some(status),
            ..TokenPolicy::default()
        });
        let host = registry.host();
        let mut command = berthd.docker_command();
        command.args(["login", "-u", "user", "--password-stdin", &host]);
        let out = output_with_stdin(&mut command, "s3cret\n");
        assert!(out.status.success(), "{status}: {}", describe(&out));
        assert_eq!(
            registry.token_grants(),
            vec![
                "refused password user".to_string(),
                "get offline".to_string()
            ],
            "{status}"
        );
        let entry = &cli_config(&berthd)["auths"][&host];
        assert!(
            entry["identitytoken"]
                .as_str()
                .is_some_and(|t| t.starts_with("refresh-")),
            "{status}: {entry}"
        );
    }
}

#[test]
fn a_blob_a_mirror_fails_is_fetched_from_the_next_mirror_or_the_origin() {
    if !can_run() {
        return;
    }
    use berth_tests::fake_registry::{layer, FakeRegistry, LayerCompression, Misbehavior};
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let origin = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let layers = [
        layer(&[("a", b"one")], LayerCompression::Gzip),
        layer(&[("b", b"two")], LayerCompression::Gzip),
        layer(&[("c", b"three")], LayerCompression::Gzip),
    ];
    let pushed = origin.add_image("m/fall", "1", arch, &layers);
    let mirrored = mirror.add_image("m/fall", "1", arch, &layers);
    assert_eq!(mirrored.manifest_digest, pushed.manifest_digest);
    let blob = |digest: &str| format!("/v2/m/fall/blobs/{digest}");
    // The mirror serves the manifest but not one layer (404) nor the
    // config (503), and cuts another layer short every time; the mirror
    // after it is down.
    mirror.misbehave(&blob(&layers[0].digest), Misbehavior::Status(404));
    mirror.misbehave(&blob(&pushed.config_digest), Misbehavior::Status(503));
    mirror.misbehave(&blob(&layers[2].digest), Misbehavior::Truncate(5));
    let dead = format!("127.0.0.1:{}", free_loopback_port());
    let berthd = Berthd::builder()
        .args([
            "--registry-mirror".to_string(),
            format!("{}=http://{}", origin.host(), mirror.host()),
            "--registry-mirror".to_string(),
            format!("{}=http://{dead}", origin.host()),
        ])
        .start();
    let image = format!("{}/m/fall:1", origin.host());
    let out = berthd.docker(&["pull", &image]);
    assert!(out.status.success(), "{}\n{}", describe(&out), berthd.log());
    assert_eq!(image_id(&berthd, &image), pushed.config_digest);
    // The manifest and the layers the mirror has came from the mirror;
    // what it failed, from the origin.
    assert!(origin.gets_of("/v2/m/fall/manifests/1").is_empty());
    assert_eq!(mirror.gets_of("/v2/m/fall/manifests/1").len(), 1);
    for (path, from_origin) in [
        (blob(&layers[0].digest), 1),
        (blob(&pushed.config_digest), 1),
        (blob(&layers[1].digest), 0),
        (blob(&layers[2].digest), 1),
    ] {
        assert_eq!(origin.gets_of(&path).len(), from_origin, "{path}");
    }
    assert_eq!(mirror.gets_of(&blob(&layers[1].digest)).len(), 1);
    // The cut layer was tried (and resumed) on the mirror first; the origin
    // was asked only for the rest.
    assert_eq!(mirror.gets_of(&blob(&layers[2].digest)).len(), 5);
    let rest = &origin.gets_of(&blob(&layers[2].digest))[0];
    assert_eq!(rest.range.as_deref(), Some("bytes=25-"), "{rest:?}");
    let log = berthd.log();
    for (from, to) in [
        (
            format!("http://{}", mirror.host()),
            format!("http://{dead}"),
        ),
        (format!("http://{dead}"), origin.host()),
    ] {
        assert!(
            log.contains(&format!("blob {} of m/fall from {from}", layers[0].digest))
                && log.contains(&format!("fetching it from {to}")),
            "no fall-back from {from} to {to} logged:\n{log}"
        );
    }

    // Where the origin fails the blob too, the pull fails, naming it, and
    // keeps nothing.
    berthd.docker_ok(&["rmi", &image]);
    origin.misbehave(&blob(&layers[0].digest), Misbehavior::Status(404));
    let out = berthd.docker(&["pull", &image]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(&layers[0].digest),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["image", "inspect", &image]);
    assert!(!out.status.success(), "{}", describe(&out));
}
