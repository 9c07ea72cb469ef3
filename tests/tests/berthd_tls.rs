//! berthd on TCP with mutual TLS, as dockerd's `--tlsverify` flags set it up:
//! the docker CLI with a client certificate from the daemon's CA gets in;
//! without one, with one from another CA, or in plain HTTP it does not, and
//! the daemon keeps serving. TCP without TLS, or with bad TLS files, is
//! refused before anything starts. Loopback addresses only.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_tests::berthd::{berthd_command, free_loopback_port, Berthd};
use berth_tests::host::{docker_cli, DockerApi};
use berth_tests::output_with_timeout;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed
/// by it, and a second CA with its own client, in PEM files made by openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("berth-tls-")
            .tempdir()
            .expect("tempdir");
        let pki = Pki { dir };
        pki.ca("ca");
        pki.signed(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        );
        pki.signed("client", "ca", "extendedKeyUsage=clientAuth");
        pki.ca("other-ca");
        pki.signed("other-client", "other-ca", "extendedKeyUsage=clientAuth");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(self.dir.path()).args(args);
        let out = output_with_timeout(&mut cmd, TIMEOUT).expect("run openssl (is it installed?)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=berth test {name}"),
        ]);
    }

    fn signed(&self, name: &str, ca: &str, extensions: &str) {
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=berth test {name}"),
        ]);
        std::fs::write(self.path(&format!("{name}.ext")), extensions).expect("extensions");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// berthd's `--tlsverify` flags for the server certificate and the first CA.
    fn daemon_flags(&self) -> Vec<String> {
        vec![
            "--tlsverify".to_string(),
            "--tlscacert".to_string(),
            self.path("ca.pem").display().to_string(),
            "--tlscert".to_string(),
            self.path("server.pem").display().to_string(),
            "--tlskey".to_string(),
            self.path("server-key.pem").display().to_string(),
        ]
    }
}

/// Whether the log shows `needle` within [`TIMEOUT`]: the daemon logs a
/// refused handshake after the client has already seen the refusal, and a
/// loaded machine may run it much later.
fn log_shows(d: &Berthd, needle: &str) -> bool {
    let started = Instant::now();
    while !d.log().contains(needle) {
        if started.elapsed() > TIMEOUT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The docker CLI over TCP with `--tlsverify` and the given TLS flags, in
/// an empty `DOCKER_CERT_PATH` so that only these files are used.
fn docker_tls(d: &Berthd, pki: &Pki, tls: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(docker_cli());
    cmd.arg("--tlsverify");
    for (flag, file) in tls {
        cmd.arg(flag).arg(pki.path(file));
    }
    cmd.arg("-H")
        .arg(format!("tcp://{}", d.addr()))
        .args(args)
        .env("DOCKER_CERT_PATH", d.dir().join("no-certs"))
        .env("DOCKER_CONFIG", d.dir().join("docker-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    output_with_timeout(&mut cmd, TIMEOUT).expect("run docker")
}

fn server_version(d: &Berthd, pki: &Pki) -> Output {
    docker_tls(
        d,
        pki,
        &[
            ("--tlscacert", "ca.pem"),
            ("--tlscert", "client.pem"),
            ("--tlskey", "client-key.pem"),
        ],
        &["version", "--format", "{{.Server.Version}}"],
    )
}

/// Runs berthd with `args`, expecting it to refuse to start: its stderr, and
/// whether it created its data root or socket.
fn refused_start(args: &[String]) -> (String, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = berthd_command(dir.path());
    cmd.args(args);
    let out = output_with_timeout(&mut cmd, TIMEOUT).expect("run berthd");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "berthd started: {stderr}");
    let created = dir.path().join("data").exists() || dir.path().join("berthd.sock").exists();
    (stderr, created)
}

fn curl(args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10"]).args(args);
    output_with_timeout(&mut cmd, TIMEOUT).expect("run curl")
}

#[test]
fn docker_cli_over_mutual_tls_gets_in_and_clients_without_a_good_certificate_do_not() {
    let pki = Pki::new();
    let mut d = Berthd::builder().tcp().args(pki.daemon_flags()).start();

    let out = server_version(&d, &pki);
    assert!(
        out.status.success(),
        "docker over mTLS: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );

    // No client certificate: the handshake is refused.
    let out = docker_tls(&d, &pki, &[("--tlscacert", "ca.pem")], &["version"]);
    assert!(
        !out.status.success(),
        "docker without a client certificate got in"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate required"), "{stderr}");
    assert!(d.running(), "berthd stopped: {}", d.log());

    // A client certificate from another CA: refused too.
    let out = docker_tls(
        &d,
        &pki,
        &[
            ("--tlscacert", "ca.pem"),
            ("--tlscert", "other-client.pem"),
            ("--tlskey", "other-client-key.pem"),
        ],
        &["version"],
    );
    assert!(!out.status.success(), "a client of another CA got in");
    assert!(d.running(), "berthd stopped: {}", d.log());

    // The same without docker: curl with and without a client certificate.
    let url = format!("https://127.0.0.1:{}/_ping", d.addr().port());
    let ca = pki.path("ca.pem").display().to_string();
    let out = curl(&["--cacert", &ca, &url]);
    assert!(
        !out.status.success(),
        "curl without a client certificate got in"
    );
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client-key.pem").display().to_string();
    let out = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK", "curl over mTLS");
    // Unlike docker, curl sends a certificate the server's CA list does not
    // name, so this one reaches the daemon's verifier.
    let other_cert = pki.path("other-client.pem").display().to_string();
    let other_key = pki.path("other-client-key.pem").display().to_string();
    let out = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &other_cert,
        "--key",
        &other_key,
        &url,
    ]);
    assert!(
        !out.status.success(),
        "curl with another CA's client got in"
    );
    assert!(
        log_shows(&d, "invalid peer certificate"),
        "the foreign certificate is refused by the daemon: {}",
        d.log()
    );

    // Plain HTTP on the TLS port gets no API answer.
    let out = curl(&[&format!("http://127.0.0.1:{}/_ping", d.addr().port())]);
    assert!(!out.status.success(), "plain HTTP got in");
    assert_ne!(String::from_utf8_lossy(&out.stdout), "OK");

    // A client that connects and sends nothing holds up no one.
    let idle = TcpStream::connect(d.addr()).expect("connect");
    let out = server_version(&d, &pki);
    assert!(out.status.success(), "after refused clients: {}", d.log());
    drop(idle);

    assert!(
        log_shows(&d, "TLS handshake with 127.0.0.1"),
        "refused handshakes are logged: {}",
        d.log()
    );
    // The unix socket is not affected by TLS.
    let mut cmd = Command::new("curl");
    cmd.arg("-s")
        .arg("--unix-socket")
        .arg(d.socket())
        .arg("http://berth/_ping");
    let out = output_with_timeout(&mut cmd, TIMEOUT).expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK");

    // SIGTERM stops the TLS listener too, and the port is closed.
    let status = d.terminate();
    assert!(status.success(), "exit status {status}: {}", d.log());
    assert!(TcpStream::connect(d.addr()).is_err(), "port still open");
}

#[test]
fn tcp_without_tls_or_without_client_verification_is_refused() {
    let port = free_loopback_port();
    let tcp = vec!["-H".to_string(), format!("tcp://127.0.0.1:{port}")];

    let (stderr, created) = refused_start(&tcp);
    assert!(stderr.contains("plain TCP"), "{stderr}");
    assert!(
        stderr.contains("--tlsverify"),
        "the way out is named: {stderr}"
    );
    assert!(!created, "nothing started");

    let pki = Pki::new();
    let mut tls_only = tcp.clone();
    tls_only.extend([
        "--tls".to_string(),
        "--tlscert".to_string(),
        pki.path("server.pem").display().to_string(),
        "--tlskey".to_string(),
        pki.path("server-key.pem").display().to_string(),
    ]);
    let (stderr, created) = refused_start(&tls_only);
    assert!(stderr.contains("without --tlsverify"), "{stderr}");
    assert!(!created, "nothing started");
}

#[test]
fn missing_or_invalid_tls_files_are_named_and_nothing_starts() {
    let pki = Pki::new();
    let port = free_loopback_port();
    let with = |flag: &str, file: &Path| -> Vec<String> {
        let mut args = vec!["-H".to_string(), format!("tcp://127.0.0.1:{port}")];
        let mut flags = pki.daemon_flags();
        let at = flags.iter().position(|f| f == flag).expect("flag") + 1;
        flags[at] = file.display().to_string();
        args.extend(flags);
        args
    };

    let missing_key = pki.path("no-such-key.pem");
    let (stderr, created) = refused_start(&with("--tlskey", &missing_key));
    assert!(
        stderr.contains(&missing_key.display().to_string()),
        "{stderr}"
    );
    assert!(!created, "nothing started");

    let missing_ca = pki.path("no-such-ca.pem");
    let (stderr, created) = refused_start(&with("--tlscacert", &missing_ca));
    assert!(
        stderr.contains(&missing_ca.display().to_string()),
        "{stderr}"
    );
    assert!(!created, "nothing started");

    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let (stderr, created) = refused_start(&with("--tlscert", &garbage));
    assert!(stderr.contains(&garbage.display().to_string()), "{stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
    assert!(!created, "nothing started");

    // The client's key does not belong to the server's certificate.
    let (stderr, created) = refused_start(&with("--tlskey", &pki.path("client-key.pem")));
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    assert!(!created, "nothing started");
}
