#![forbid(unsafe_code)]
//! `docker cp` (both ways, files, directories and tar streams), `docker
//! export`, `docker diff` and `docker commit` through the real docker CLI
//! against berthd, for running and stopped containers; the stat header,
//! archive names and diff output next to Debian's dockerd; and the
//! `docker cp` breakouts (CVE-2018-15664 class): symlinks in a container
//! that point at host paths never make the daemon read or write a host file.
//! Each test starts its own berthd; the guards remove everything.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_tests::berthd::Berthd;
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{describe, mounts_under, ping, shell_quote, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout};

/// A daemon with the busybox image imported as `busybox:latest`.
fn with_busybox<D: DockerApi>(daemon: D) -> D {
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    daemon.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    daemon
}

fn berthd() -> Berthd {
    with_busybox(Berthd::start())
}

fn run(mut command: Command) -> Output {
    output_with_timeout(&mut command, CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// `docker <args>` against `daemon` through `sh`, followed by `shell`
/// (a redirection or a pipe).
fn docker_sh(daemon: &dyn DockerApi, args: &[&str], shell: &str) -> Output {
    let command = daemon.docker_command();
    let mut line = vec![command.get_program().to_string_lossy().into_owned()];
    line.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    line.extend(args.iter().map(|a| a.to_string()));
    let quoted: Vec<String> = line.iter().map(|a| shell_quote(a)).collect();
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("{} {shell}", quoted.join(" ")));
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    run(sh)
}

/// `docker <args>` against `daemon` with `file` as standard input.
fn docker_stdin(daemon: &dyn DockerApi, args: &[&str], file: &Path) -> Output {
    docker_sh(
        daemon,
        args,
        &format!("< {}", shell_quote(&file.to_string_lossy())),
    )
}

/// An HTTP request on the daemon's socket: (status, headers, body).
fn request(
    daemon: &dyn DockerApi,
    method: &str,
    path: &str,
    body: Option<&Path>,
) -> (u16, String, Vec<u8>) {
    let work = tempfile::tempdir().expect("tempdir");
    let headers = work.path().join("headers");
    let mut curl = Command::new("curl");
    curl.arg("-s")
        .arg("--unix-socket")
        .arg(daemon.socket())
        .arg("-D")
        .arg(&headers);
    if method == "HEAD" {
        curl.arg("-I");
    } else {
        curl.arg("-X").arg(method);
    }
    if let Some(body) = body {
        curl.arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg("-H")
            .arg("Content-Type: application/x-tar");
    }
    curl.arg(format!("http://daemon{path}"));
    let out = run(curl);
    assert!(out.status.success(), "curl {path}: {}", describe(&out));
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers, out.stdout)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// `HEAD /containers/{c}/archive?path=`: the status and the decoded stat.
fn path_stat(daemon: &dyn DockerApi, container: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, headers, _) = request(
        daemon,
        "HEAD",
        &format!("/containers/{container}/archive?path={path}"),
        None,
    );
    let stat = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("X-Docker-Container-Path-Stat")
                .then(|| v.trim().to_string())
        })
        .map(|v| serde_json::from_slice(&base64_decode(&v)).expect("stat JSON"))
        .unwrap_or(serde_json::Value::Null);
    (status, stat)
}

/// Names and contents (regular files) or link targets of a tar.
fn tar_entries(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("tar")
        .map(|e| {
            let mut e = e.expect("tar entry");
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let content = match e.link_name_bytes() {
                Some(link) => format!("-> {}", String::from_utf8_lossy(&link)),
                None => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).expect("tar data");
                    String::from_utf8_lossy(&data).into_owned()
                }
            };
            (name, content)
        })
        .collect()
}

/// What every real tar writer fills in.
fn set_owner_and_time(h: &mut tar::Header) {
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_234_567_890);
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    tar_entries(bytes).into_iter().map(|(n, _)| n).collect()
}

/// A unique directory under /tmp on the host, removed when dropped.
fn host_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("host tempdir")
}

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)))
        .expect("set mtime");
}

/// What a copied tree holds: per relative path, its kind, mode, mtime
/// (seconds) and content.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let md = std::fs::symlink_metadata(&path).expect("lstat");
            let rel = path
                .strip_prefix(root)
                .expect("below")
                .display()
                .to_string();
            let what = if md.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else if md.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", md.mode() & 0o7777)
            } else {
                format!(
                    "file {:o} {} {}",
                    md.mode() & 0o7777,
                    md.mtime(),
                    std::fs::read_to_string(&path).expect("read")
                )
            };
            out.insert(rel, what);
        }
    }
    out
}

/// A host tree to copy: a file with a mode and an old mtime, a directory
/// with a private file, a symlink.
fn make_source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::write(src.join("f"), "file content\n").expect("write");
    std::fs::set_permissions(src.join("f"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    set_mtime(&src.join("f"), 981_173_106);
    std::fs::write(src.join("sub/g"), "private\n").expect("write");
    std::fs::set_permissions(src.join("sub/g"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    set_mtime(&src.join("sub/g"), 1_000_000_000);
    std::os::unix::fs::symlink("f", src.join("link")).expect("symlink");
    src
}

#[test]
fn cp_files_and_directories_both_ways_running_and_stopped() {
    let berthd = berthd();
    let work = tempfile::tempdir().expect("tempdir");
    let src = make_source(work.path());
    berthd.docker_ok(&["run", "-d", "--name", "running", "busybox", "sleep", "1000"]);
    // Never started: its root is mounted only for each copy.
    berthd.docker_ok(&["create", "--name", "created", "busybox", "cat", "/tmp/f"]);
    // Started and exited.
    berthd.docker_ok(&["run", "--name", "exited", "busybox", "true"]);
    let mounts_before = mounts_under(&berthd.data_root()).len();

    for name in ["running", "created", "exited"] {
        let file = src.join("f").to_string_lossy().into_owned();
        berthd.docker_ok(&["cp", &file, &format!("{name}:/tmp/")]);
        berthd.docker_ok(&["cp", &src.to_string_lossy(), &format!("{name}:/tmp/copied")]);
        // Into a directory that exists: the source keeps its name.
        berthd.docker_ok(&["cp", &src.to_string_lossy(), &format!("{name}:/tmp/copied")]);

        let out = work.path().join(format!("out-{name}"));
        std::fs::create_dir(&out).expect("mkdir");
        berthd.docker_ok(&[
            "cp",
            &format!("{name}:/tmp/f"),
            &out.join("f").to_string_lossy(),
        ]);
        berthd.docker_ok(&[
            "cp",
            &format!("{name}:/tmp/copied"),
            &out.join("tree").to_string_lossy(),
        ]);
        let md = std::fs::metadata(out.join("f")).expect("copied file");
        assert_eq!(
            std::fs::read_to_string(out.join("f")).expect("read"),
            "file content\n"
        );
        assert_eq!(
            (md.mode() & 0o7777, md.mtime()),
            (0o640, 981_173_106),
            "{name}"
        );
        let mut want = tree(&src);
        for (k, v) in tree(&src) {
            want.insert(format!("src/{k}"), v);
        }
        want.insert(
            "src".into(),
            format!(
                "dir {:o}",
                std::fs::metadata(&src).expect("md").mode() & 0o7777
            ),
        );
        assert_eq!(tree(&out.join("tree")), want, "{name}");
        assert_eq!(
            mounts_under(&berthd.data_root()).len(),
            mounts_before,
            "{name}"
        );
    }
    // The running container sees what was copied in, at once.
    let out = berthd.docker_ok(&["exec", "running", "cat", "/tmp/f", "/tmp/copied/sub/g"]);
    assert_eq!(out, "file content\nprivate\n");
    // The created one starts with it (its root was unmounted cleanly).
    let out = berthd.docker_ok(&["start", "-a", "created"]);
    assert_eq!(out, "file content\n");
    // `docker cp -a`: the container user's owner; without, the archive's.
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "daemon-user",
        "--user",
        "daemon",
        "busybox",
        "sleep",
        "1000",
    ]);
    std::os::unix::fs::chown(src.join("f"), Some(1234), Some(4321)).expect("chown");
    berthd.docker_ok(&[
        "cp",
        &src.join("f").to_string_lossy(),
        "daemon-user:/tmp/plain",
    ]);
    berthd.docker_ok(&[
        "cp",
        "-a",
        &src.join("f").to_string_lossy(),
        "daemon-user:/tmp/archive",
    ]);
    let owners = berthd.docker_ok(&[
        "exec",
        "daemon-user",
        "stat",
        "-c",
        "%u:%g",
        "/tmp/plain",
        "/tmp/archive",
    ]);
    assert_eq!(owners, "1234:4321\n1:1\n");
}

#[test]
fn cp_tar_streams_both_ways() {
    let berthd = berthd();
    let work = tempfile::tempdir().expect("tempdir");
    berthd.docker_ok(&["run", "-d", "--name", "ctr", "busybox", "sleep", "1000"]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("dir/a", "A\n"), ("dir/b", "B\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_234_567_890);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_bytes())
            .expect("append");
    }
    let input = work.path().join("in.tar");
    std::fs::write(&input, b.into_inner().expect("tar")).expect("write");

    let out = docker_stdin(&berthd, &["cp", "-", "ctr:/tmp"], &input);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        berthd.docker_ok(&["exec", "ctr", "cat", "/tmp/dir/a", "/tmp/dir/b"]),
        "A\nB\n"
    );
    // A stream needs a directory to extract into.
    let out = docker_stdin(&berthd, &["cp", "-", "ctr:/tmp/dir/a"], &input);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("must be a directory"),
        "{}",
        describe(&out)
    );

    let out = berthd.docker(&["cp", "ctr:/tmp/dir", "-"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        tar_entries(&out.stdout),
        [
            ("dir/".to_string(), String::new()),
            ("dir/a".to_string(), "A\n".to_string()),
            ("dir/b".to_string(), "B\n".to_string()),
        ]
    );
    let out = berthd.docker(&["cp", "ctr:/tmp/dir/.", "-"]);
    assert_eq!(
        tar_names(&out.stdout),
        ["./", "./a", "./b"],
        "{}",
        describe(&out)
    );
}

#[test]
fn diff_export_and_stat_agree_with_dockerd() {
    let script = "mkdir -p /tmp/d/sub; echo hi > /tmp/d/f; echo x >> /etc/passwd; rm /bin/ls; \
                  ln -s /etc/passwd /lnk; ln -s /tmp/d /dlnk; ln -s /nonexist/x /broken; \
                  rm -rf /home; mkdir /home; touch /home/new";
    let berthd = berthd();
    let dockerd = with_busybox(Dockerd::start());
    let daemons: [&dyn DockerApi; 2] = [&berthd, &dockerd];
    for d in daemons {
        d.docker_ok(&["run", "--name", "ctr", "busybox", "sh", "-c", script]);
    }
    let diff = |d: &dyn DockerApi| {
        let mut lines: Vec<String> = d
            .docker_ok(&["diff", "ctr"])
            .lines()
            .map(str::to_owned)
            .collect();
        // dockerd's order is a Go map's: compare as sets.
        lines.sort();
        lines
    };
    let want = diff(&dockerd);
    assert_eq!(diff(&berthd), want);
    assert!(want.contains(&"D /bin/ls".to_string()), "{want:?}");
    assert!(want.contains(&"A /tmp/d/f".to_string()), "{want:?}");
    assert!(want.contains(&"C /etc/passwd".to_string()), "{want:?}");

    for path in [
        "/etc/passwd",
        "/tmp/d",
        "/tmp/d/",
        "/tmp/d/.",
        "/",
        "/lnk",
        "/dlnk",
        "/dlnk/",
        "/broken",
        "/nope",
        "/tmp/nope/x",
    ] {
        let (want_status, mut want) = path_stat(&dockerd, "ctr", path);
        let (status, mut got) = path_stat(&berthd, "ctr", path);
        assert_eq!(status, want_status, "HEAD {path}");
        for stat in [&mut want, &mut got] {
            if let Some(obj) = stat.as_object_mut() {
                obj.remove("mtime");
                // A directory's size is its filesystem's business.
                if obj["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0) {
                    obj.remove("size");
                }
            }
        }
        assert_eq!(got, want, "HEAD {path}");
    }
    for path in [
        "/tmp/d",
        "/tmp/d/",
        "/tmp/d/.",
        "/lnk",
        "/dlnk",
        "/dlnk/",
        "/etc/passwd",
    ] {
        let (_, _, want) = request(
            &dockerd,
            "GET",
            &format!("/containers/ctr/archive?path={path}"),
            None,
        );
        let (status, headers, got) = request(
            &berthd,
            "GET",
            &format!("/containers/ctr/archive?path={path}"),
            None,
        );
        assert_eq!(status, 200, "GET {path}: {headers}");
        assert_eq!(tar_entries(&got), tar_entries(&want), "GET {path}");
    }

    // Export: the whole root, relative names, what the container wrote.
    let out = berthd.docker(&["export", "ctr"]);
    assert!(out.status.success(), "{}", describe(&out));
    let names = tar_names(&out.stdout);
    for name in [
        "bin/",
        "bin/busybox",
        "etc/passwd",
        "tmp/d/f",
        "lnk",
        "home/new",
    ] {
        assert!(
            names.contains(&name.to_string()),
            "{name} not in export: {names:?}"
        );
    }
    assert!(!names.contains(&"bin/ls".to_string()));
    let piped = docker_sh(&berthd, &["export", "ctr"], "| tar t");
    assert!(piped.status.success(), "{}", describe(&piped));
    assert!(
        text(&piped.stdout).lines().any(|l| l == "etc/passwd"),
        "{}",
        describe(&piped)
    );
    // A fresh container has no changes (the runtime's mount points aside).
    berthd.docker_ok(&["run", "--name", "fresh", "busybox", "true"]);
    assert_eq!(berthd.docker_ok(&["diff", "fresh"]), "");
}

#[test]
fn commit_makes_an_image_that_runs() {
    let berthd = berthd();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ctr",
        "busybox",
        "sh",
        "-c",
        "echo committed > /hello; exec sleep 1000",
    ]);
    assert!(wait_for(|| berthd
        .docker(&["exec", "ctr", "cat", "/hello"])
        .status
        .success()));
    let id = berthd
        .docker_ok(&[
            "commit",
            "-c",
            r#"CMD ["cat","/hello"]"#,
            "-c",
            "ENV FOO=bar",
            "-m",
            "msg",
            "-a",
            "me",
            "ctr",
            "committed:v1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    // The container was paused for the commit, and runs again.
    assert_eq!(
        berthd
            .docker_ok(&["inspect", "-f", "{{.State.Status}}", "ctr"])
            .trim(),
        "running"
    );
    assert_eq!(
        berthd.docker_ok(&["run", "--rm", "committed:v1"]),
        "committed\n"
    );
    let inspect = berthd.docker_ok(&[
        "image", "inspect", "-f",
        "{{.Id}}|{{.Comment}}|{{.Author}}|{{json .Config.Cmd}}|{{json .Config.Env}}|{{len .RootFS.Layers}}",
        "committed:v1",
    ]);
    assert_eq!(
        inspect.trim(),
        format!(r#"{id}|msg|me|["cat","/hello"]|["FOO=bar"]|2"#)
    );
    let images = berthd.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        images.contains(&format!("committed:v1 {}", &id[7..19])),
        "{images}"
    );
    let history = berthd.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "committed:v1",
    ]);
    assert!(
        history.starts_with("sh -c echo committed > /hello; exec sleep 1000|msg\n"),
        "{history}"
    );
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &unix_now().to_string(),
        "--filter",
        "container=ctr",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events
        .lines()
        .filter(|a| ["pause", "commit", "unpause"].contains(a))
        .collect();
    assert_eq!(actions, ["pause", "commit", "unpause"], "{events}");
    // The image id is the digest of the config `docker save` writes.
    let out = berthd.docker(&["save", "committed:v1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let config_blob = format!("blobs/sha256/{}", &id[7..]);
    assert!(
        tar_names(&out.stdout).contains(&config_blob),
        "no {config_blob} in the saved image"
    );

    // A stopped container, no changes: no new layer; a commit of the new image's container stacks.
    berthd.docker_ok(&["create", "--name", "idle", "committed:v1"]);
    let id2 = berthd
        .docker_ok(&["commit", "idle", "idle:v1"])
        .trim()
        .to_string();
    let layers = berthd.docker_ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", &id2]);
    assert_eq!(layers.trim(), "2");
    berthd.docker_ok(&[
        "run",
        "--name",
        "third",
        "committed:v1",
        "sh",
        "-c",
        "echo 3 > /third; rm /hello",
    ]);
    berthd.docker_ok(&["commit", "third", "third:v1"]);
    assert_eq!(
        berthd.docker_ok(&[
            "run",
            "--rm",
            "third:v1",
            "sh",
            "-c",
            "cat /third; ls /hello 2>&1 || true"
        ]),
        "3\nls: /hello: No such file or directory\n"
    );
    assert_eq!(berthd.docker_ok(&["diff", "third"]), "D /hello\nA /third\n");
}

fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + 1)
        .unwrap_or(0)
}

#[test]
fn cp_out_through_symlinks_reads_the_containers_files_only() {
    let berthd = berthd();
    let secret_dir = host_dir("berth-cp-secret-");
    let secret = secret_dir.path().join("shadow");
    std::fs::write(&secret, "HOST SECRET\n").expect("write host secret");
    let secret = secret.to_string_lossy().into_owned();
    let dir = secret_dir.path().to_string_lossy().into_owned();
    // The container has its own file at the host file's path, and links to
    // it by absolute and relative paths and through a link to `/`.
    let script = format!(
        "mkdir -p {dir} && echo CONTAINER > {secret} && ln -s {secret} /abs && \
         ln -s ../../../../../..{secret} /rel && ln -s / /root-link && ln -s {dir} /hostdir"
    );
    berthd.docker_ok(&["run", "--name", "ctr", "busybox", "sh", "-c", &script]);

    for link in ["/abs", "/rel"] {
        let out = berthd.docker(&["cp", "-L", &format!("ctr:{link}"), "-"]);
        assert!(out.status.success(), "{link}: {}", describe(&out));
        let entries = tar_entries(&out.stdout);
        assert_eq!(entries.len(), 1, "{link}: {entries:?}");
        assert_eq!(entries[0].1, "CONTAINER\n", "{link}");
        // Without -L: the link itself.
        let out = berthd.docker(&["cp", &format!("ctr:{link}"), "-"]);
        assert!(
            tar_entries(&out.stdout)[0].1.starts_with("-> "),
            "{link}: {}",
            describe(&out)
        );
    }
    // The stat header's link target is resolved inside the container.
    let (_, stat) = path_stat(&berthd, "ctr", "/rel");
    assert_eq!(stat["linkTarget"], secret.as_str());
    let (_, stat) = path_stat(&berthd, "ctr", "/root-link");
    assert_eq!(stat["linkTarget"], "/");

    // Through links to the host's directory: what the container has there.
    let out = berthd.docker(&["cp", "ctr:/hostdir/shadow", "-"]);
    assert_eq!(
        tar_entries(&out.stdout),
        [("shadow".to_string(), "CONTAINER\n".to_string())]
    );

    // A container without the file: the same links lead nowhere.
    let script =
        format!("ln -s {secret} /abs && ln -s {dir} /hostdir && ln -s / /r && echo BARE > /marker");
    berthd.docker_ok(&["run", "--name", "bare", "busybox", "sh", "-c", &script]);
    for path in [
        "/abs/",
        "/hostdir/shadow",
        "/r/../..{secret}",
        "/r/r/r/hostdir/shadow",
    ] {
        let path = path.replace("{secret}", &secret);
        let (status, _, body) = request(
            &berthd,
            "GET",
            &format!("/containers/bare/archive?path={path}"),
            None,
        );
        assert_eq!(status, 404, "GET {path}: {}", text(&body));
        assert!(!text(&body).contains("HOST SECRET"));
        let out = berthd.docker(&["cp", "-L", &format!("bare:{path}"), "-"]);
        assert!(!out.status.success(), "cp {path}: {}", describe(&out));
        assert!(!text(&out.stdout).contains("HOST SECRET"), "cp {path}");
    }
    let out = berthd.docker(&["cp", "-L", "bare:/abs", "-"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("Could not find the file"),
        "{}",
        describe(&out)
    );
    // `/` through a link is the container's root.
    let out = berthd.docker(&["cp", "bare:/r/r/marker", "-"]);
    assert_eq!(
        tar_entries(&out.stdout),
        [("marker".to_string(), "BARE\n".to_string())]
    );
    assert_eq!(
        std::fs::read_to_string(secret_dir.path().join("shadow")).expect("read"),
        "HOST SECRET\n"
    );
}

#[test]
fn cp_in_through_symlinks_never_writes_the_host() {
    let berthd = berthd();
    let target = host_dir("berth-cp-target-");
    let dir = target.path().to_string_lossy().into_owned();
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("payload");
    std::fs::write(&file, "payload\n").expect("write");
    let file = file.to_string_lossy().into_owned();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ctr",
        "busybox",
        "sh",
        "-c",
        &format!(
            "ln -s {dir} /escape && ln -s ../../../../..{dir} /up && ln -s / /r && exec sleep 1000"
        ),
    ]);
    assert!(wait_for(|| berthd
        .docker(&["exec", "ctr", "test", "-L", "/r"])
        .status
        .success()));

    for dest in [
        "/escape/",
        "/escape/new",
        "/up/",
        "/up/new",
        "/r/escape/",
        &format!("/r{dir}/"),
    ] {
        let out = berthd.docker(&["cp", &file, &format!("ctr:{dest}")]);
        assert!(
            !out.status.success(),
            "cp to {dest} succeeded: {}",
            describe(&out)
        );
    }
    // PUT with hostile entries: refused whole, nothing written anywhere.
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("symlink-then-write", {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            set_owner_and_time(&mut h);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "evil", &dir).expect("link");
            let mut h = tar::Header::new_gnu();
            set_owner_and_time(&mut h);
            h.set_size(5);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "evil/pwned", &b"pwned"[..])
                .expect("append");
            b.into_inner().expect("tar")
        }),
        ("hardlink-out", {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            set_owner_and_time(&mut h);
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            b.append_link(&mut h, "passwd-link", "../../../../../etc/passwd")
                .expect("link");
            b.into_inner().expect("tar")
        }),
        ("through-existing-link", {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            set_owner_and_time(&mut h);
            h.set_size(5);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "escape/pwned", &b"pwned"[..])
                .expect("append");
            b.into_inner().expect("tar")
        }),
    ];
    for (what, tar) in hostile {
        let body = work.path().join(format!("{what}.tar"));
        std::fs::write(&body, tar).expect("write");
        let (status, _, resp) = request(
            &berthd,
            "PUT",
            "/containers/ctr/archive?path=/",
            Some(&body),
        );
        assert_eq!(status, 400, "{what}: {}", text(&resp));
        assert!(
            text(&resp).contains("archive entry"),
            "{what}: {}",
            text(&resp)
        );
    }
    assert_eq!(
        std::fs::read_dir(target.path()).expect("read_dir").count(),
        0,
        "the host dir was written"
    );
    let root = berthd.docker_ok(&["exec", "ctr", "ls", "-a", "/"]);
    assert!(
        !root
            .lines()
            .any(|l| l == "evil" || l == "passwd-link" || l == "pwned"),
        "{root}"
    );
    // What a link leads to inside the container is fine to write.
    berthd.docker_ok(&["exec", "ctr", "mkdir", "-p", &dir]);
    berthd.docker_ok(&["cp", &file, "ctr:/escape/"]);
    assert_eq!(
        berthd.docker_ok(&["exec", "ctr", "cat", &format!("{dir}/payload")]),
        "payload\n"
    );
    assert_eq!(
        std::fs::read_dir(target.path()).expect("read_dir").count(),
        0,
        "the host dir was written"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let berthd = berthd();
    berthd.docker_ok(&["run", "-d", "--name", "ctr", "busybox", "sleep", "1000"]);
    let work = tempfile::tempdir().expect("tempdir");
    let garbage = work.path().join("garbage");
    std::fs::write(&garbage, "this is not a tar archive\n").expect("write");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    set_owner_and_time(&mut h);
    h.set_size(4000);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "big", &[b'x'; 4000][..])
        .expect("append");
    let full = b.into_inner().expect("tar");
    let truncated = work.path().join("truncated");
    std::fs::write(&truncated, &full[..2048]).expect("write");
    let good = work.path().join("good");
    std::fs::write(&good, &full).expect("write");
    let empty = work.path().join("empty");
    std::fs::write(&empty, "").expect("write");

    let cases: Vec<(&str, &str, Option<&Path>, u16, &str)> = vec![
        (
            "PUT",
            "/containers/ctr/archive?path=/tmp",
            Some(&garbage),
            400,
            "not a valid tar archive",
        ),
        (
            "PUT",
            "/containers/ctr/archive?path=/tmp",
            Some(&truncated),
            400,
            "cut short",
        ),
        (
            "PUT",
            "/containers/ctr/archive?path=/tmp",
            Some(&empty),
            400,
            "empty",
        ),
        (
            "PUT",
            "/containers/ctr/archive",
            Some(&good),
            400,
            "'path' cannot be empty",
        ),
        (
            "PUT",
            "/containers/ctr/archive?path=/nope",
            Some(&good),
            404,
            "Could not find the file /nope in container ctr",
        ),
        (
            "PUT",
            "/containers/ctr/archive?path=/etc/passwd",
            Some(&good),
            400,
            "extraction point is not a directory",
        ),
        (
            "PUT",
            "/containers/nope/archive?path=/tmp",
            Some(&good),
            404,
            "No such container: nope",
        ),
        (
            "GET",
            "/containers/ctr/archive?path=/nope",
            None,
            404,
            "Could not find the file /nope in container ctr",
        ),
        (
            "GET",
            "/containers/ctr/archive?path=",
            None,
            400,
            "'path' cannot be empty",
        ),
        (
            "GET",
            "/containers/nope/export",
            None,
            404,
            "No such container: nope",
        ),
        (
            "GET",
            "/containers/nope/changes",
            None,
            404,
            "No such container: nope",
        ),
        (
            "POST",
            "/commit?container=nope",
            None,
            404,
            "No such container: nope",
        ),
        (
            "POST",
            "/commit?container=ctr&changes=RUN%20true",
            None,
            400,
            "run is not a valid change command",
        ),
        (
            "POST",
            "/commit?container=ctr&repo=UPPER",
            None,
            400,
            "invalid reference format",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let (got, _, resp) = request(&berthd, method, path, body);
        assert_eq!(got, status, "{method} {path}: {}", text(&resp));
        assert!(
            text(&resp).contains(message),
            "{method} {path}: {}",
            text(&resp)
        );
    }
    let (status, _) = path_stat(&berthd, "ctr", "/nope");
    assert_eq!(status, 404);
    assert!(ping(&berthd.socket()), "berthd went down");
    // Nothing of the rejected archives was written.
    assert_eq!(berthd.docker_ok(&["exec", "ctr", "ls", "/tmp"]), "");
    let (status, _, _) = request(
        &berthd,
        "PUT",
        "/containers/ctr/archive?path=/tmp",
        Some(&good),
    );
    assert_eq!(status, 200);
    assert_eq!(
        berthd
            .docker_ok(&["exec", "ctr", "wc", "-c", "/tmp/big"])
            .trim(),
        "4000 /tmp/big"
    );
    // A read-only root refuses copies in.
    berthd.docker_ok(&["create", "--name", "ro", "--read-only", "busybox", "true"]);
    let (status, _, resp) = request(
        &berthd,
        "PUT",
        "/containers/ro/archive?path=/tmp",
        Some(&good),
    );
    assert_eq!(status, 400, "{}", text(&resp));
    assert!(text(&resp).contains("read-only"), "{}", text(&resp));
}

#[test]
fn cp_reaches_into_bind_mounts_as_the_container_sees_them() {
    // dockerd copies to and from the host directories bound into the
    // container, not the empty mount points under them in the rootfs.
    let berthd = berthd();
    let data = host_dir("berth-cp-bind-");
    let ro = host_dir("berth-cp-ro-");
    std::fs::write(data.path().join("from-host"), "host data\n").expect("write");
    std::fs::write(ro.path().join("kept"), "kept\n").expect("write");
    let data_bind = format!("{}:/data", data.path().display());
    let ro_bind = format!("type=bind,src={},dst=/ro,readonly", ro.path().display());
    berthd.docker_ok(&[
        "run", "-d", "--name", "bound", "-v", &data_bind, "--mount", &ro_bind, "busybox", "sleep",
        "1000",
    ]);
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("to-container");
    std::fs::write(&src, "copied in\n").expect("write");

    for state in ["running", "stopped"] {
        // In: the file lands in the host directory, and the container sees it.
        berthd.docker_ok(&["cp", &src.to_string_lossy(), "bound:/data/sub-copy"]);
        assert_eq!(
            std::fs::read_to_string(data.path().join("sub-copy")).expect("copied file"),
            "copied in\n",
            "{state}"
        );
        std::fs::remove_file(data.path().join("sub-copy")).expect("remove");

        // Out: a file below the bind, and the bind's own root by its name.
        let out = work.path().join(format!("out-{state}"));
        std::fs::create_dir(&out).expect("mkdir");
        berthd.docker_ok(&["cp", "bound:/data/from-host", &out.to_string_lossy()]);
        assert_eq!(
            std::fs::read_to_string(out.join("from-host")).expect("copied out"),
            "host data\n"
        );
        berthd.docker_ok(&["cp", "bound:/data", &out.to_string_lossy()]);
        assert_eq!(
            std::fs::read_to_string(out.join("data/from-host")).expect("bind root copied"),
            "host data\n"
        );

        // A read-only bind refuses writes with dockerd's message.
        let refused = berthd.docker(&["cp", &src.to_string_lossy(), "bound:/ro/"]);
        assert!(!refused.status.success(), "{}", describe(&refused));
        assert!(
            text(&refused.stderr).contains("mounted volume is marked read-only"),
            "{}",
            describe(&refused)
        );
        assert!(!ro.path().join("to-container").exists());

        if state == "running" {
            let seen = berthd.docker_ok(&["exec", "bound", "cat", "/ro/kept"]);
            assert_eq!(seen, "kept\n");
            berthd.docker_ok(&["stop", "-t", "1", "bound"]);
        }
    }
    berthd.docker_ok(&["rm", "bound"]);
}
