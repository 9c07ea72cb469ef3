//! berthd as the docker CLI sees it: version negotiation, info, events, the
//! data-root lock, socket permissions and a clean shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::berthd::Berthd;
use berth_tests::host::{assert_success, docker_cli, DockerApi, CLI_TIMEOUT};
use berth_tests::{output_with_timeout, unique_name, workspace_binary};

#[test]
fn docker_cli_reads_version_and_info() {
    let d = Berthd::start();
    let v = d.docker_ok(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(
        v.trim(),
        format!("{} 1.50 linux", env!("CARGO_PKG_VERSION"))
    );
    let info = d.docker_ok(&[
        "info",
        "--format",
        "{{.OSType}} {{.DockerRootDir}} {{.Images}} {{.Driver}}",
    ]);
    assert_eq!(
        info.trim(),
        format!("linux {} 0 overlay2", d.dir().join("data").display())
    );
}

#[test]
fn api_versions_outside_the_range_are_refused_with_dockers_message() {
    let d = Berthd::start();
    assert!(d.curl("/v1.41/_ping") == "OK");
    assert_eq!(
        d.curl("/v1.99/version"),
        r#"{"message":"client version 1.99 is too new. Maximum supported API version is 1.50"}"#
    );
    assert!(d
        .curl("/v1.12/info")
        .contains("client version 1.12 is too old. Minimum supported API version is 1.24"));
    assert_eq!(
        d.curl("/v1.41/no/such/thing"),
        r#"{"message":"page not found"}"#
    );
    // An older client (API 1.41) negotiates down and works.
    let mut cmd = Command::new(docker_cli());
    cmd.arg("-H")
        .arg(format!("unix://{}", d.socket().display()))
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_API_VERSION", "1.41");
    let out = output_with_timeout(&mut cmd, CLI_TIMEOUT).expect("docker");
    assert_eq!(assert_success(&out, "docker version").trim(), "1.50");
}

#[test]
fn events_with_until_in_the_past_end_at_once() {
    let d = Berthd::start();
    let started = Instant::now();
    let out = d.docker(&["events", "--since", "0", "--until", "1"]);
    assert_eq!(assert_success(&out, "docker events"), "");
    assert!(started.elapsed() < Duration::from_secs(10));
    let out = d.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        "1",
        "--filter",
        "colour=red",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn second_daemon_on_the_same_data_root_is_refused() {
    let d = Berthd::start();
    let mut cmd = Command::new(workspace_binary("berthd"));
    cmd.arg("--data-root")
        .arg(d.dir().join("data"))
        .arg("--exec-root")
        .arg(d.dir().join("exec2"))
        .arg("--config-file")
        .arg(d.dir().join("daemon.json"))
        .arg("-H")
        .arg(format!("unix://{}", d.dir().join("second.sock").display()));
    let out = output_with_timeout(&mut cmd, CLI_TIMEOUT).expect("second berthd");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another berthd is already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.dir().join("second.sock").exists());
    // The first one still answers.
    assert_eq!(d.curl("/_ping"), "OK");
}

#[test]
fn socket_is_private_and_sigterm_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let group = unique_name();
    let mut d = Berthd::builder().args(["--group", &group]).start();
    let mode = std::fs::metadata(d.socket())
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "no such group: only root may connect");
    assert!(d.pidfile().exists());
    let status = d.terminate();
    assert!(status.success(), "exit status {status}: {}", d.log());
    assert!(!d.socket().exists(), "socket removed");
    assert!(!d.pidfile().exists(), "pidfile removed");
}

#[test]
fn bad_config_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("daemon.json");
    std::fs::write(&config, r#"{"storage-driver": "vfs", "colour": "blue"}"#).expect("write");
    let mut cmd = Command::new(workspace_binary("berthd"));
    cmd.arg("--config-file")
        .arg(&config)
        .arg("--data-root")
        .arg(dir.path().join("data"))
        .arg("-H")
        .arg(format!("unix://{}", dir.path().join("s.sock").display()));
    let out = output_with_timeout(&mut cmd, CLI_TIMEOUT).expect("berthd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("don't match any configuration option: colour"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists(), "nothing created");
}

#[test]
fn socket_belongs_to_an_existing_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Debian's base system always has the `daemon` group.
    let Some(gid) = std::fs::read_to_string("/etc/group").ok().and_then(|g| {
        g.lines()
            .find_map(|l| l.strip_prefix("daemon:x:"))
            .and_then(|rest| rest.split(':').next()?.parse::<u32>().ok())
    }) else {
        panic!("this host has no daemon group in /etc/group");
    };
    let d = Berthd::builder().args(["--group", "daemon"]).start();
    let meta = std::fs::metadata(d.socket()).expect("socket");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.gid(), gid);
}

#[test]
fn ping_answers_get_and_head_with_engine_headers() {
    let d = Berthd::start();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-I", "--unix-socket"])
        .arg(d.socket())
        .arg("http://berth/_ping");
    let out = output_with_timeout(&mut cmd, CLI_TIMEOUT).expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    for h in [
        "http/1.1 200",
        "api-version: 1.50",
        "ostype: linux",
        "docker-experimental: false",
        "builder-version:",
    ] {
        assert!(headers.contains(h), "HEAD /_ping lacks {h:?}: {headers}");
    }
    assert_eq!(d.curl("/_ping"), "OK");
}
