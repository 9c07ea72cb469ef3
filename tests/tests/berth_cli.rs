#![forbid(unsafe_code)]
//! The `berth` CLI against Debian's dockerd and against berthd: for each image
//! command, `berth -H unix://…` must print what `docker -H unix://…` prints
//! against the same daemon (tables, IDs, messages, exit codes), up to the
//! "N seconds ago" that moves between the two runs.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use berth_tests::berthd::Berthd;
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{
    describe, docker_cli, sorted_lines, text, unix_now, DockerApi, CLI_TIMEOUT,
};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout, workspace_binary};

/// One dockerd (with its containerd) at a time: two cores run them side by side badly.
static ONE_DAEMON: Mutex<()> = Mutex::new(());

fn berth_cli() -> PathBuf {
    let path = workspace_binary("berth");
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build -p berth-cli`",
        path.display()
    );
    path
}

/// Both CLIs against one dockerd, the only one of this test binary while it lives.
struct Clis {
    dockerd: Dockerd,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Clis {
    fn start() -> Clis {
        let one_at_a_time = ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        Clis {
            dockerd: Dockerd::start(),
            _one_at_a_time: one_at_a_time,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dockerd.socket().display())
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Output {
        self.dockerd.docker(args)
    }

    /// The berth CLI with the same environment as the docker CLI.
    fn berth(&self, args: &[&str]) -> Output {
        let mut command = self.dockerd.cli_command(&berth_cli());
        command.args(args);
        output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth")
    }

    #[track_caller]
    fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        text(&out.stdout)
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        self.dockerd.docker_ok(args)
    }

    /// Runs `args` with both CLIs and asserts equal exit codes, stdout and
    /// stderr after `normalize`.
    #[track_caller]
    fn compare_with(&self, args: &[&str], normalize: fn(&str) -> String) -> Output {
        let docker = self.docker(args);
        let berth = self.berth(args);
        let what = format!(
            "{args:?}\n--- docker: {}\n--- berth: {}",
            describe(&docker),
            describe(&berth)
        );
        assert_eq!(
            docker.status.code(),
            berth.status.code(),
            "exit codes of {what}"
        );
        assert_eq!(
            normalize(&text(&docker.stdout)),
            normalize(&text(&berth.stdout)),
            "stdout of {what}"
        );
        assert_eq!(
            normalize(&text(&docker.stderr)),
            normalize(&text(&berth.stderr)),
            "stderr of {what}"
        );
        berth
    }

    #[track_caller]
    fn compare(&self, args: &[&str]) -> Output {
        self.compare_with(args, table_rows)
    }
}

/// A tar of a busybox root filesystem, in a tempdir that lives as long as it.
struct RootfsTar {
    dir: tempfile::TempDir,
}

impl RootfsTar {
    fn new() -> RootfsTar {
        let dir = tempfile::Builder::new()
            .prefix("berth-cli-rootfs-")
            .tempdir()
            .expect("tempdir");
        make_busybox_rootfs_tar(dir.path());
        RootfsTar { dir }
    }

    fn path(&self) -> String {
        self.dir.path().join("rootfs.tar").display().to_string()
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The rest of `word` after a leading "ago" ("" or closing punctuation, as
/// in `ago",` inside JSON), if the word is one.
fn ago_rest(word: &str) -> Option<&str> {
    let rest = word.strip_prefix("ago")?;
    (!rest.starts_with(|c: char| c.is_alphanumeric())).then_some(rest)
}

/// "3 seconds ago", "Less than a second ago", "About a minute ago" → "<ago>",
/// also inside JSON (`"CreatedSince":" 3 seconds ago",`).
fn without_ages(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let age = match words[i..] {
            ["Less", "than", "a", "second", ago, ..] if ago_rest(ago).is_some() => Some(5),
            ["About", "a", "minute", ago, ..] | ["About", "an", "hour", ago, ..]
                if ago_rest(ago).is_some() =>
            {
                Some(4)
            }
            [n, _, ago, ..] if n.parse::<u32>().is_ok() && ago_rest(ago).is_some() => Some(3),
            _ => None,
        };
        match age {
            Some(len) => {
                let rest = ago_rest(words[i + len - 1]).unwrap_or_default();
                out.push(format!("<ago>{rest}"));
                i += len;
            }
            None => {
                out.push(words[i].to_owned());
                i += 1;
            }
        }
    }
    out.join(" ")
}

/// Output compared as a table: ages replaced, columns separated by one tab
/// whatever their width, rows after the header (if any) sorted: a daemon
/// lists images created in the same second in any order.
fn table_rows(output: &str) -> String {
    let mut lines: Vec<String> = output
        .lines()
        .map(|line| {
            let line = line.replace("\"CreatedSince\":\"", "\"CreatedSince\":\" ");
            let line = without_ages(&line);
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect();
    // A header is in capitals ("REPOSITORY TAG ..."); an ID of digits only
    // (`images -q`) has no letter at all and is a row.
    let has_header = lines.first().is_some_and(|first| {
        first.chars().any(|c| c.is_ascii_uppercase())
            && !first.chars().any(|c| c.is_ascii_lowercase())
    });
    let rows = usize::from(has_header);
    if lines.len() > rows {
        lines[rows..].sort();
    }
    lines.join("\n")
}

/// Output with every 64-hex digest replaced, for images made separately.
fn without_digests(output: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in output.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() == 64 { "<digest>" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn server_part(version: &str) -> String {
    version
        .split_once("\nServer:")
        .map(|(_, server)| server.to_owned())
        .unwrap_or_default()
}

#[test]
fn ages_are_masked_in_tables_and_json() {
    assert_eq!(
        table_rows("IMAGE  CREATED  SIZE\nabc  3 seconds ago  1MB\n"),
        table_rows("IMAGE  CREATED  SIZE\nabc  Less than a second ago  1MB\n"),
    );
    let json = |since: &str| table_rows(&format!(r#"{{"CreatedSince":"{since}","ID":"abc"}}"#));
    assert_eq!(json("2 seconds ago"), json("About a minute ago"));
    assert_eq!(
        json("1 second ago"),
        r#"{"CreatedSince":" <ago>","ID":"abc"}"#
    );
    assert_ne!(
        json("2 seconds ago"),
        table_rows(r#"{"CreatedSince":"x","ID":"abc"}"#)
    );
    // An ID of digits only is a row, sorted with the others.
    assert_eq!(table_rows("123456789012\n0abc\n"), "0abc\n123456789012");
}

#[test]
fn listing_inspecting_and_errors_match_docker() {
    let dockerd = Clis::start();
    let fixture = RootfsTar::new();
    let tar = fixture.path();

    let id = dockerd.berth_ok(&["import", &tar, "cli-test/one:latest"]);
    assert!(id.starts_with("sha256:"), "import printed {id:?}");
    let listed = dockerd.docker_ok(&["images", "--no-trunc", "-q", "cli-test/one"]);
    assert_eq!(
        listed.trim(),
        id.trim(),
        "the imported image is listed by docker"
    );
    dockerd.berth_ok(&[
        "image",
        "import",
        "--change",
        "LABEL purpose=cli-test",
        "--message",
        "imported by berth",
        &tar,
        "cli-test/two:v2",
    ]);
    dockerd.docker_ok(&["import", &tar]);
    assert_eq!(
        dockerd.berth_ok(&["tag", "cli-test/one", "cli-test/alias:v1"]),
        ""
    );
    dockerd.berth_ok(&["image", "tag", "cli-test/two:v2", "cli-test/two:latest"]);

    for args in [
        &["images"][..],
        &["images", "-q"],
        &["images", "-a"],
        &["images", "--digests"],
        &["images", "--no-trunc"],
        &["image", "ls", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Size}}"],
        &["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Size}} {{.VirtualSize}} {{.Containers}}"],
        &["images", "--format", "{{json .}}"],
        &["images", "--filter", "dangling=true"],
        &["images", "--filter", "dangling=false", "-q"],
        &["images", "--filter", "reference=cli-test/two"],
        &["images", "--filter", "label=purpose=cli-test"],
        &["images", "cli-test/one"],
        &["history", "cli-test/two:v2"],
        &["image", "history", "--no-trunc", "cli-test/two:v2"],
        &["history", "-H=false", "cli-test/two:v2"],
        &["history", "-q", "cli-test/one"],
        &["history", "--format", "{{.ID}}|{{.Size}}|{{.Comment}}", "cli-test/two:v2"],
        &["image", "inspect", "cli-test/two:v2"],
        &["inspect", "cli-test/one", "cli-test/two:v2"],
        &[
            "image",
            "inspect",
            "--format",
            r#"{{.Id}} {{index .Config.Labels "purpose"}} {{json .RepoTags}} {{.Comment}} {{range .RootFS.Layers}}[{{.}}]{{end}} {{.Size}}"#,
            "cli-test/two:v2",
        ],
        &["info", "--format", "{{.ServerVersion}} {{.Driver}} {{.Images}} {{.DockerRootDir}} {{json .RegistryConfig.InsecureRegistryCIDRs}}"],
        &["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}/{{.Server.Arch}}"],
        &["system", "df"],
        &["system", "df", "--format", "{{.Type}}: {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}"],
    ] {
        dockerd.compare(args);
    }
    // Ages move between the two runs: compared as table rows, ages masked.
    dockerd.compare(&["system", "df", "-v"]);

    // Only the server half: the client halves describe different programs.
    let docker_version = dockerd.docker_ok(&["version"]);
    let berth_version = dockerd.berth_ok(&["version"]);
    assert!(!server_part(&docker_version).is_empty(), "{docker_version}");
    assert_eq!(server_part(&docker_version), server_part(&berth_version));

    // Daemon errors: docker's message and exit status 1.
    let out = dockerd.compare(&["rmi", "no-such-image"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: No such image: no-such-image:latest\n"
    );
    dockerd.compare(&["rmi", "no-such-image", "other-missing:v1"]);
    dockerd.compare(&["image", "inspect", "no-such-image"]);
    dockerd.compare(&["history", "no-such-image"]);
    dockerd.compare(&["tag", "no-such-image", "x:y"]);
    dockerd.compare(&["images", "--filter", "bogus=1"]);

    // Command-line errors: the same exit codes (the wording is berth's own).
    for args in [
        &["images", "--bogus"][..],
        &["rmi"],
        &["tag", "only-one"],
        &["images", "a", "b"],
        &["image", "bogus"],
    ] {
        let docker = dockerd.docker(args);
        let berth = dockerd.berth(args);
        assert_eq!(
            docker.status.code(),
            berth.status.code(),
            "{args:?}\n--- docker: {}\n--- berth: {}",
            describe(&docker),
            describe(&berth)
        );
        assert!(!berth.stderr.is_empty(), "berth {args:?} explains itself");
    }
}

#[test]
fn save_load_remove_and_prune_match_docker() {
    let dockerd = Clis::start();
    let fixture = RootfsTar::new();
    let tar = fixture.path();
    dockerd.berth_ok(&["import", &tar, "cli-test/one:latest"]);
    dockerd.berth_ok(&["import", "-m", "second", &tar, "cli-test/two:latest"]);

    // The same archive, entry for entry, from both CLIs.
    let berth_archive = fixture.file("berth-one.tar");
    let docker_archive = fixture.file("docker-one.tar");
    assert_eq!(
        dockerd.berth_ok(&["save", "-o", &berth_archive, "cli-test/one"]),
        ""
    );
    dockerd.docker_ok(&["save", "-o", &docker_archive, "cli-test/one"]);
    let listing = |archive: &str| {
        let mut command = Command::new("tar");
        command.arg("-tf").arg(archive);
        let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run tar");
        assert!(
            out.status.success(),
            "tar -tf {archive}: {}",
            describe(&out)
        );
        sorted_lines(&text(&out.stdout))
    };
    assert_eq!(listing(&berth_archive), listing(&docker_archive));
    assert!(listing(&berth_archive).contains("manifest.json"));

    // Two images in one archive, removed, then loaded back.
    let both = fixture.file("both.tar");
    dockerd.berth_ok(&[
        "image",
        "save",
        "--output",
        &both,
        "cli-test/one",
        "cli-test/two",
    ]);
    let removed = dockerd.berth_ok(&["rmi", "cli-test/one", "cli-test/two"]);
    assert!(
        removed.contains("Untagged: cli-test/one:latest\n"),
        "{removed}"
    );
    assert!(
        removed.contains("Untagged: cli-test/two:latest\n"),
        "{removed}"
    );
    assert!(removed.contains("Deleted: sha256:"), "{removed}");
    let loaded = dockerd.berth_ok(&["load", "-i", &both]);
    assert_eq!(
        sorted_lines(&loaded),
        "Loaded image: cli-test/one:latest\nLoaded image: cli-test/two:latest"
    );
    // Removing and loading again through docker prints the same.
    let docker_removed = dockerd.docker_ok(&["rmi", "cli-test/one", "cli-test/two"]);
    let docker_loaded = dockerd.docker_ok(&["load", "--input", &both]);
    dockerd.docker_ok(&["rmi", "cli-test/one", "cli-test/two"]);
    assert_eq!(sorted_lines(&removed), sorted_lines(&docker_removed));
    assert_eq!(sorted_lines(&loaded), sorted_lines(&docker_loaded));
    assert_eq!(
        sorted_lines(&dockerd.berth_ok(&["image", "load", "-q", "-i", &both])),
        sorted_lines(&loaded)
    );

    // save to stdout and load from stdin, as in `berth save x | berth load`.
    let berth = berth_cli().display().to_string();
    let piped = format!(
        "'{berth}' -H '{host}' save cli-test/two > '{file}' && '{berth}' -H '{host}' rmi cli-test/two >/dev/null && '{berth}' -H '{host}' load < '{file}'",
        host = dockerd.host(),
        file = fixture.file("piped.tar"),
    );
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(&piped);
    let out = output_with_timeout(&mut shell, CLI_TIMEOUT).expect("run sh");
    assert!(out.status.success(), "{piped}: {}", describe(&out));
    assert_eq!(text(&out.stdout), "Loaded image: cli-test/two:latest\n");

    // A tar archive never goes to a terminal.
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--command"])
        .arg(format!(
            "'{berth}' -H '{}' save cli-test/two",
            dockerd.host()
        ))
        .arg("/dev/null");
    let out = output_with_timeout(&mut script, CLI_TIMEOUT).expect("run script");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stdout)
            .contains("cowardly refusing to save to a terminal. Use the -o flag or redirect"),
        "{}",
        describe(&out)
    );

    // prune: dangling images only, then all unused; same report as docker's.
    let prune_report = |program: &str| {
        dockerd.docker_ok(&["import", &tar]);
        let dangling =
            dockerd.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
        let args = ["image", "prune", "--force"];
        let out = if program == "berth" {
            dockerd.berth_ok(&args)
        } else {
            dockerd.docker_ok(&args)
        };
        assert!(
            out.contains(&format!("deleted: {}", dangling.trim())),
            "{out}"
        );
        without_digests(&out)
    };
    assert_eq!(prune_report("berth"), prune_report("docker"));
    let out = dockerd.berth_ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: cli-test/one:latest\n"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(dockerd.berth_ok(&["images", "-q"]), "");
    dockerd.compare(&["image", "prune", "--force", "--filter", "until=1h"]);
}

#[test]
fn events_match_docker() {
    let dockerd = Clis::start();
    let fixture = RootfsTar::new();
    let since = dockerd.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!since.is_empty());
    let start = unix_now() - 1;
    dockerd.berth_ok(&["import", &fixture.path(), "cli-test/events:one"]);
    dockerd.berth_ok(&["tag", "cli-test/events:one", "cli-test/events:two"]);
    dockerd.berth_ok(&["rmi", "cli-test/events:two"]);
    std::thread::sleep(Duration::from_millis(1100));
    let until = (unix_now() + 1).to_string();
    let start = start.to_string();
    let out = dockerd.compare_with(
        &[
            "events",
            "--since",
            &start,
            "--until",
            &until,
            "--filter",
            "type=image",
        ],
        |s| s.to_owned(),
    );
    let events = text(&out.stdout);
    assert!(events.contains(" image import "), "{events}");
    assert!(events.contains(" image tag "), "{events}");
    assert!(events.contains(" image untag "), "{events}");
    dockerd.compare_with(
        &[
            "system",
            "events",
            "--since",
            &start,
            "--until",
            &until,
            "--filter",
            "event=tag",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}",
        ],
        |s| s.to_owned(),
    );
}

#[test]
fn berth_talks_to_berthd() {
    let berthd = Berthd::start();
    let host = format!("unix://{}", berthd.socket().display());
    let format = "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}";

    // BERTH_HOST instead of -H.
    let mut command = Command::new(berth_cli());
    command
        .args(["version", "--format", format])
        .env("BERTH_HOST", &host)
        .env_remove("DOCKER_HOST");
    let berth = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth");
    assert!(
        berth.status.success(),
        "berth version: {}",
        describe(&berth)
    );
    assert_eq!(
        text(&berth.stdout).trim(),
        format!("{} 1.50 linux", env!("CARGO_PKG_VERSION"))
    );

    let mut command = Command::new(docker_cli());
    command
        .arg("-H")
        .arg(&host)
        .args(["version", "--format", format]);
    let docker = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run docker");
    assert_eq!(text(&docker.stdout), text(&berth.stdout));

    let mut command = Command::new(berth_cli());
    command.arg("-H").arg(&host).arg("version").env("TZ", "UTC");
    let berth = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth");
    let mut command = Command::new(docker_cli());
    command.arg("-H").arg(&host).arg("version").env("TZ", "UTC");
    let docker = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run docker");
    assert!(
        berth.status.success(),
        "berth version: {}",
        describe(&berth)
    );
    assert_eq!(
        server_part(&text(&docker.stdout)),
        server_part(&text(&berth.stdout))
    );

    // No daemon: exit status 1 and a message naming the socket.
    let missing = format!("unix://{}", berthd.dir().join("missing.sock").display());
    let mut command = Command::new(berth_cli());
    command.arg("-H").arg(&missing).arg("images");
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains(&missing), "{}", describe(&out));
}
