#![forbid(unsafe_code)]
//! The real docker CLI against berthd and against Debian's dockerd 20.10,
//! side by side: the same image commands on the same images must print the
//! same thing and exit the same way (ages like "5 seconds ago" aside).
//!
//! Each test starts one dockerd and one berthd on private directories.
//! dockerd builds the fixtures (an imported busybox and a multi-layer image
//! with three tags, built from it with COPY steps only), saves them, and
//! forgets them, so both daemons then start from the same archives.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_tests::berthd::Berthd;
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{
    describe, shell_quote, sorted_lines, text, unix_now, DockerApi, CLI_TIMEOUT,
};
use berth_tests::output_with_timeout;

const MULTI_TAGS: [&str; 3] = ["multi:1", "multi:2", "localhost:5000/x/multi:v"];

fn run(mut command: Command) -> Output {
    output_with_timeout(&mut command, CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// `docker <args>` against `daemon` with `file` as standard input.
fn docker_with_stdin(daemon: &dyn DockerApi, args: &[&str], file: &Path) -> Output {
    let command = daemon.docker_command();
    let mut line = vec![command.get_program().to_string_lossy().into_owned()];
    line.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    line.extend(args.iter().map(|a| a.to_string()));
    let quoted: Vec<String> = line.iter().map(|a| shell_quote(a)).collect();
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!(
        "exec {} < {}",
        quoted.join(" "),
        shell_quote(&file.to_string_lossy())
    ));
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    run(shell)
}

/// dockerd and berthd with the fixture archives in `work`.
struct Pair {
    dockerd: Dockerd,
    berthd: Berthd,
    work: tempfile::TempDir,
}

impl Pair {
    /// Starts both daemons, builds the fixtures on dockerd, saves them to
    /// `bb.tar` and `multi.tar`, and empties dockerd again.
    fn start() -> Pair {
        let dockerd = Dockerd::start();
        let berthd = Berthd::start();
        let work = tempfile::Builder::new()
            .prefix("berth-images-work-")
            .tempdir()
            .expect("tempdir");
        let pair = Pair {
            dockerd,
            berthd,
            work,
        };
        pair.make_fixtures();
        pair
    }

    fn path(&self, name: &str) -> String {
        self.work.path().join(name).to_string_lossy().into_owned()
    }

    fn make_fixtures(&self) {
        let tar = berth_tests::make_busybox_rootfs_tar(self.work.path());
        let tar = tar.to_str().expect("UTF-8 path");
        let d = &self.dockerd;
        d.docker_ok(&["import", "--change", r#"CMD ["/bin/sh"]"#, tar, "bb:latest"]);
        // Another second, so listings order the two images by creation.
        std::thread::sleep(Duration::from_millis(1100));
        let context = self.work.path().join("context");
        std::fs::create_dir_all(&context).expect("context dir");
        std::fs::write(context.join("a.txt"), "hello\n").expect("a.txt");
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(context.join("big.bin"), big).expect("big.bin");
        std::fs::write(
            context.join("Dockerfile"),
            "FROM bb:latest\nLABEL org.test.kind=multi\nCOPY a.txt /a.txt\nENV FOO=bar\n\
             COPY big.bin /data/big.bin\nWORKDIR /data\n",
        )
        .expect("Dockerfile");
        let context = context.to_string_lossy().into_owned();
        let mut build = vec!["build", "-q"];
        for tag in MULTI_TAGS {
            build.extend(["-t", tag]);
        }
        build.push(&context);
        d.docker_ok(&build);
        let mut save = vec!["save", "-o"];
        let multi = self.path("multi.tar");
        save.push(&multi);
        save.extend(MULTI_TAGS);
        d.docker_ok(&save);
        d.docker_ok(&["save", "-o", &self.path("bb.tar"), "bb:latest"]);
        // Intermediate images of the build go too.
        d.docker_ok(&["image", "prune", "--all", "--force"]);
        assert_eq!(
            d.docker_ok(&["images", "--all", "--quiet"]),
            "",
            "dockerd emptied"
        );
    }

    fn both(&self, args: &[&str]) -> [Output; 2] {
        [self.dockerd.docker(args), self.berthd.docker(args)]
    }

    /// Runs `args` on both; asserts the same exit code and the same
    /// normalized stdout and stderr. Returns dockerd's normalized stdout.
    #[track_caller]
    fn same(&self, args: &[&str], normalize: fn(&str) -> String) -> String {
        let [d, b] = self.both(args);
        self.assert_same(args, &d, &b, normalize)
    }

    #[track_caller]
    fn assert_same(
        &self,
        what: &[&str],
        d: &Output,
        b: &Output,
        normalize: fn(&str) -> String,
    ) -> String {
        let context = || {
            format!(
                "docker {what:?}\n--- dockerd: {}\n--- berthd: {}\n--- berthd log:\n{}",
                describe(d),
                describe(b),
                self.berthd.log()
            )
        };
        assert_eq!(d.status.code(), b.status.code(), "{}", context());
        assert_eq!(
            normalize(&text(&d.stdout)),
            normalize(&text(&b.stdout)),
            "stdout differs: {}",
            context()
        );
        assert_eq!(
            normalize(&text(&d.stderr)),
            normalize(&text(&b.stderr)),
            "stderr differs: {}",
            context()
        );
        normalize(&text(&d.stdout))
    }

    /// Loads the fixtures into both daemons (outputs compared).
    fn load_fixtures(&self) {
        self.same(&["load", "-i", &self.path("multi.tar")], exact);
        self.same(&["load", "-q", "-i", &self.path("bb.tar")], exact);
    }
}

fn exact(s: &str) -> String {
    s.to_string()
}

/// A table the docker CLI printed, with ages ("3 seconds ago") and column
/// padding taken out, the header first and the rows sorted: dockerd orders
/// the rows of one image, and images created in the same second, randomly.
fn table(s: &str) -> String {
    let mut lines = s.lines().map(columns);
    let header = lines.next().unwrap_or_default();
    let mut rows: Vec<String> = lines.collect();
    rows.sort();
    std::iter::once(header)
        .chain(rows)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One output line with padding collapsed and ages replaced.
fn columns(line: &str) -> String {
    line.split("  ")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| if f.ends_with(" ago") { "<age>" } else { f })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Lines in order, ages replaced (history is ordered).
fn ordered(s: &str) -> String {
    s.lines().map(columns).collect::<Vec<_>>().join("\n")
}

/// JSON lines with the fields that hold ages removed, sorted.
fn json_lines(s: &str) -> String {
    let mut lines: Vec<String> = s
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            if let Some(o) = v.as_object_mut() {
                o.remove("CreatedSince");
            }
            v.to_string()
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `docker inspect` output with the storage paths of GraphDriver.Data
/// (private to each daemon) left out.
fn without_driver_data(s: &str) -> String {
    let mut out = Vec::new();
    let mut skipping: Option<usize> = None;
    for line in s.lines() {
        let indent = line.len() - line.trim_start().len();
        match skipping {
            Some(depth) => {
                if indent == depth && line.trim_start().starts_with('}') {
                    skipping = None;
                }
            }
            None if line.trim_start().starts_with("\"Data\": {") => {
                skipping = Some(indent);
                out.push(format!("{}\"Data\": <paths>,", " ".repeat(indent)));
            }
            None if line.trim_start().starts_with("\"Data\": null") => {
                out.push(format!("{}\"Data\": <paths>,", " ".repeat(indent)));
            }
            None => out.push(line.to_string()),
        }
    }
    out.join("\n")
}

/// Also masks what differs between two imports of the same tarball: the
/// id (it hashes the creation time), the times, and the engine version.
fn import_inspect(s: &str) -> String {
    without_driver_data(s)
        .lines()
        .map(|line| {
            let key = line.trim_start().split(':').next().unwrap_or_default();
            match key {
                "\"Id\"" | "\"Created\"" | "\"DockerVersion\"" | "\"LastTagTime\"" => {
                    format!("{key}: <masked>")
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sleeps into the next second and returns it, so `--since` of events
/// sees nothing from before.
fn next_second() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 10_000_000,
    ));
    now.as_secs() + 1
}

#[test]
fn load_gives_the_same_images_as_dockerd() {
    let p = Pair::start();
    p.load_fixtures();
    for args in [
        &["images"][..],
        &["images", "--all"],
        &["images", "--digests"],
        &["images", "--no-trunc"],
        &["images", "--quiet"],
        &["images", "--all", "--quiet", "--no-trunc"],
        &[
            "image",
            "ls",
            "--format",
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
        ],
    ] {
        p.same(args, table);
    }
    p.same(&["images", "--format", "{{json .}}"], json_lines);
    // Newest first, the second-apart images in order.
    let order = p.same(&["images", "--format", "{{.ID}}"], exact);
    let mut ids: Vec<&str> = order.lines().collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "{order}");
    for name in ["multi:1", "bb", "localhost:5000/x/multi:v"] {
        p.same(&["image", "inspect", name], without_driver_data);
    }
    p.same(
        &[
            "inspect",
            "--format",
            "{{.Id}} {{.Size}} {{.RepoTags}} {{len .RootFS.Layers}} {{.Metadata.LastTagTime}}",
            "multi:2",
        ],
        exact,
    );
    // Loading again changes nothing; a tag held by another image moves.
    p.same(&["load", "-i", &p.path("multi.tar")], exact);
    p.same(&["tag", "bb", "multi:2"], exact);
    p.same(&["load", "-i", &p.path("multi.tar")], exact);
    p.same(&["images"], table);
    p.same(&["load", "-i", &p.path("no-such.tar")], exact);
}

#[test]
fn listing_filters_match_dockerd() {
    let p = Pair::start();
    p.load_fixtures();
    let bb_id = p.dockerd.docker_ok(&["images", "--quiet", "bb"]);
    let bb_id = bb_id.trim();
    let before_bb = format!("before={bb_id}");
    for filter in [
        "dangling=true",
        "dangling=false",
        "reference=multi*",
        "reference=*/x/*",
        "reference=multi:2",
        "reference=bb",
        "reference=nothing*",
        "label=org.test.kind",
        "label=org.test.kind=multi",
        "label=org.test.kind=other",
        "before=multi:1",
        "since=bb",
        "since=bb:latest",
        &before_bb,
        "before=nosuch",
        "since=NotValid",
        "dangling=maybe",
        "colour=red",
    ] {
        p.same(&["images", "--filter", filter], table);
    }
    p.same(
        &[
            "images",
            "--filter",
            "reference=multi*",
            "--filter",
            "reference=bb",
        ],
        table,
    );
    p.same(&["images", "multi"], table);
    p.same(&["images", "localhost:5000/x/multi"], table);
    p.same(&["images", "--quiet", "multi:2"], table);
    // A dangling image: bb's tag moves to multi.
    p.same(&["tag", "multi:1", "bb:latest"], exact);
    for args in [
        &["images"][..],
        &["images", "--all"],
        &["images", "--digests"],
        &["images", "--filter", "dangling=true"],
        &["images", "--filter", "dangling=false"],
        &["images", "--filter", "dangling=true", "--quiet"],
        &["images", "--filter", "reference=*"],
    ] {
        p.same(args, table);
    }
    p.same(&["images", "--format", "{{json .}}"], json_lines);
    p.same(&["image", "inspect", bb_id], without_driver_data);
}

#[test]
fn history_matches_dockerd() {
    let p = Pair::start();
    p.load_fixtures();
    for args in [
        &["history", "multi:1"][..],
        &["history", "--no-trunc", "multi:1"],
        &["history", "-H=false", "multi:1"],
        &["history", "--quiet", "multi:1"],
        &["image", "history", "bb"],
        &["history", "-H=false", "bb:latest"],
        &[
            "history",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}",
            "multi:2",
        ],
        &["history", "nosuch"],
        &["history", "Bad"],
    ] {
        p.same(args, ordered);
    }
}

#[test]
fn tag_and_rmi_follow_dockerds_rules() {
    let p = Pair::start();
    p.load_fixtures();
    let id = p.dockerd.docker_ok(&["images", "--quiet", "multi:1"]);
    let id = id.trim();
    let long_id = p
        .dockerd
        .docker_ok(&["images", "--quiet", "--no-trunc", "multi:1"]);
    let long_id = long_id.trim();
    let hex = long_id.trim_start_matches("sha256:");
    for args in [
        &["tag", "bb", "localhost:5000/x/y:t"][..],
        &["tag", id, "by-id:1"],
        &["tag", long_id, "by-long-id"],
        &["image", "tag", hex, "by-hex"],
        &["tag", "bb", "Bad:Name"],
        &["tag", "bb", "x:y:z"],
        &["tag", "bb", ""],
        &[
            "tag",
            "bb",
            "a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        &["tag", "nosuch", "a:b"],
        &["tag", "Nope", "a:b"],
        &["tag", "sha256:0000", "a:b"],
    ] {
        p.same(args, exact);
    }
    p.same(&["images"], table);
    p.same(
        &["image", "inspect", "--format", "{{.RepoTags}}", id],
        exact,
    );
    // Untag while other names remain; an id with several names needs -f.
    for args in [
        &["rmi", "multi:2"][..],
        &["rmi", "by-id:1", "by-long-id"],
        &["rmi", id],
        &["rmi", "nosuch"],
        &["rmi", "nosuch:1"],
        &["rmi", "BAD"],
        &["rmi", "sha256:0000"],
        &[
            "rmi",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ],
        &["image", "rm", "localhost:5000/x/y:t"],
    ] {
        p.same(args, exact);
    }
    // -f on the id: every name goes, then the image and the layers only it
    // has; the base layer stays for bb.
    p.same(&["rmi", "--force", id], exact);
    p.same(&["images", "--all"], table);
    p.same(&["history", "-H=false", "bb"], ordered);
    // The last name of an image deletes it with its layers.
    p.same(&["rmi", "bb"], exact);
    p.same(&["images", "--all"], table);
    p.same(&["system", "df"], table);
}

#[test]
fn prune_and_df_match_dockerd() {
    let p = Pair::start();
    p.load_fixtures();
    p.same(&["system", "df"], table);
    p.same(&["system", "df", "-v"], table);
    // bb's tag moves: its image is dangling, and prune takes only it.
    p.same(&["tag", "multi:1", "bb:latest"], exact);
    p.same(&["system", "df"], table);
    p.same(
        &["image", "prune", "--force", "--filter", "colour=red"],
        exact,
    );
    p.same(
        &["image", "prune", "--force", "--filter", "dangling=maybe"],
        exact,
    );
    p.same(&["image", "prune", "--force"], sorted_lines);
    p.same(&["image", "prune", "--force"], sorted_lines);
    p.same(&["images", "--all"], table);
    // Nothing old enough, nothing with that label.
    p.same(
        &["image", "prune", "--all", "--force", "--filter", "until=1h"],
        sorted_lines,
    );
    p.same(
        &[
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            "label=org.test.kind=other",
        ],
        sorted_lines,
    );
    p.same(
        &[
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            "label!=org.test.kind",
        ],
        sorted_lines,
    );
    p.same(&["images", "--all"], table);
    p.same(&["load", "-q", "-i", &p.path("bb.tar")], exact);
    p.same(
        &[
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            "label=org.test.kind=multi",
        ],
        sorted_lines,
    );
    p.same(&["images", "--all"], table);
    p.same(
        &[
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            "until=2000-01-01",
        ],
        sorted_lines,
    );
    p.same(&["image", "prune", "--all", "--force"], sorted_lines);
    p.same(&["system", "df", "-v"], table);
}

#[test]
fn import_matches_dockerd() {
    let p = Pair::start();
    let rootfs = p.path("rootfs.tar");
    p.same(
        &[
            "import",
            "--change",
            "ENV A=b",
            "--change",
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "--change",
            "LABEL x=y",
            "--change",
            "WORKDIR /tmp",
            "--message",
            "made in a test",
            &rootfs,
            "imp:1",
        ],
        |s| format!("{} lines", s.lines().count()),
    );
    let [d, b] = [&p.dockerd as &dyn DockerApi, &p.berthd].map(|x| {
        docker_with_stdin(
            x,
            &["import", "--message", "from stdin", "-", "imp:stdin"],
            Path::new(&rootfs),
        )
    });
    p.assert_same(&["import", "-"], &d, &b, |s| {
        format!("{} lines", s.lines().count())
    });
    for name in ["imp:1", "imp:stdin"] {
        p.same(&["image", "inspect", name], import_inspect);
        p.same(
            &[
                "history",
                "--format",
                "{{.CreatedBy}}|{{.Size}}|{{.Comment}}",
                name,
            ],
            exact,
        );
    }
    p.same(
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
        sorted_lines,
    );
    p.same(&["import", &p.path("no-such.tar")], exact);
    p.same(&["import", &rootfs, "Bad:Name"], exact);
}

#[test]
fn save_and_load_across_daemons() {
    let p = Pair::start();
    p.load_fixtures();
    // What berthd saves, dockerd loads with the same ids and names, and
    // the other way round.
    let from_berthd = p.path("from-berthd.tar");
    let from_dockerd = p.path("from-dockerd.tar");
    for (daemon, file) in [
        (&p.berthd as &dyn DockerApi, &from_berthd),
        (&p.dockerd, &from_dockerd),
    ] {
        let mut save = vec!["save", "-o", file.as_str()];
        save.extend(MULTI_TAGS);
        save.push("bb");
        daemon.docker_ok(&save);
    }
    p.same(&["image", "prune", "--all", "--force"], sorted_lines);
    let d = p.dockerd.docker(&["load", "-i", &from_berthd]);
    let b = p.berthd.docker(&["load", "-i", &from_dockerd]);
    p.assert_same(&["load", "-i", "<the other's save>"], &d, &b, sorted_lines);
    p.same(&["images", "--no-trunc"], table);
    p.same(&["image", "inspect", "multi:1", "bb"], without_driver_data);
    // Saved by id: no names, loaded as "Loaded image ID: …".
    let id = p.dockerd.docker_ok(&["images", "--quiet", "bb"]);
    let id = id.trim();
    let by_id = p.path("by-id.tar");
    p.berthd.docker_ok(&["save", "-o", &by_id, id]);
    p.same(&["rmi", "bb"], exact);
    p.same(&["load", "-i", &by_id], exact);
    p.same(&["images", "--all"], table);
    // Errors.
    p.same(&["save", "-o", &p.path("none.tar"), "nosuch"], exact);
    p.same(&["save", "-o", &p.path("none.tar"), "Bad"], exact);
}

#[test]
fn events_match_dockerd() {
    let p = Pair::start();
    let since = next_second().to_string();
    p.load_fixtures();
    for args in [
        &["tag", "bb", "bb:two"][..],
        &["tag", "multi:1", "bb:two"],
        &["rmi", "bb:two"],
        &["save", "-o", &p.path("again.tar"), "bb"],
        &["rmi", "multi:2"],
        &["rmi", "--force", "localhost:5000/x/multi:v"],
        &["rmi", "nosuch"],
    ] {
        p.same(args, exact);
    }
    let id = p.dockerd.docker_ok(&["images", "--quiet", "multi:1"]);
    p.same(&["rmi", "--force", id.trim()], exact);
    p.same(&["image", "prune", "--all", "--force"], sorted_lines);
    let imported = [&p.dockerd as &dyn DockerApi, &p.berthd].map(|x| {
        x.docker_ok(&[
            "import",
            "--change",
            "LABEL k=v",
            &p.path("rootfs.tar"),
            "imp:1",
        ])
        .trim()
        .to_string()
    });
    let until = (unix_now() + 1).to_string();
    let format = "{{.Type}} {{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}";
    let args = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        format,
    ];
    let [d, b] = p.both(&args);
    let d_text = text(&d.stdout).replace(&imported[0], "<imported>");
    let b_text = text(&b.stdout).replace(&imported[1], "<imported>");
    assert!(
        d.status.success() && b.status.success(),
        "{}\n{}",
        describe(&d),
        describe(&b)
    );
    assert!(d_text.contains("image load "), "{d_text}");
    assert_eq!(
        d_text,
        b_text,
        "events differ; berthd log:\n{}",
        p.berthd.log()
    );
}
