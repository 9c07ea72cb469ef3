#![forbid(unsafe_code)]
//! `docker stats`, `docker top`, `docker update`, `docker container prune`
//! and `docker port` through the real docker CLI against berthd, plus
//! Berth's `GET /containers/stats`. Each test starts its own berthd on
//! private directories with its own cgroup parent; the guard removes every
//! container process, cgroup, mount and file.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_tests::berthd::Berthd;
use berth_tests::host::{describe, text, unix_now, DockerApi};
use berth_tests::make_busybox_rootfs_tar;

/// berthd with the busybox image imported as `busybox:latest`.
fn daemon() -> Berthd {
    let berthd = Berthd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    berthd
}

fn inspect(berthd: &Berthd, name: &str, format: &str) -> String {
    berthd
        .docker_ok(&["inspect", "-f", format, name])
        .trim()
        .to_string()
}

/// `docker <args>` that must fail; its stderr.
#[track_caller]
fn refused(berthd: &Berthd, args: &[&str]) -> String {
    let out = berthd.docker(args);
    assert!(!out.status.success(), "docker {args:?}: {}", describe(&out));
    text(&out.stderr)
}

/// The body of `GET <path>` on berthd's socket, with curl giving up after
/// `max_time` (for streams).
fn curl_for(berthd: &Berthd, path: &str, max_time: &str) -> String {
    let out: Output = Command::new("curl")
        .args(["-sN", "--max-time", max_time, "--unix-socket"])
        .arg(berthd.socket())
        .arg(format!("http://berth{path}"))
        .output()
        .expect("curl");
    text(&out.stdout)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The container's cgroup directory for `controller` on a cgroup v1 (or
/// hybrid) host, from its init's /proc/<pid>/cgroup; None on a cgroup2 host.
fn v1_cgroup_dir(berthd: &Berthd, name: &str, controller: &str) -> Option<PathBuf> {
    let mount = PathBuf::from("/sys/fs/cgroup").join(controller);
    if !mount.join("cgroup.procs").exists() {
        return None;
    }
    let pid = inspect(berthd, name, "{{.State.Pid}}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} line in {cgroups}"));
    Some(mount.join(path.trim_start_matches('/')))
}

/// The container's cgroup2 directory (pure cgroup2 hosts).
fn v2_cgroup_dir(berthd: &Berthd, name: &str) -> PathBuf {
    let pid = inspect(berthd, name, "{{.State.Pid}}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup2 line");
    PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'))
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// memory limit, memory+swap limit, pids limit, CFS quota and period, as
/// the kernel has them for the container (v1 files, or their cgroup2
/// equivalents given in v1 terms).
fn limits(berthd: &Berthd, name: &str) -> [String; 5] {
    match v1_cgroup_dir(berthd, name, "memory") {
        Some(memory) => {
            let pids = v1_cgroup_dir(berthd, name, "pids").expect("pids hierarchy");
            let cpu = v1_cgroup_dir(berthd, name, "cpu").expect("cpu hierarchy");
            [
                read(memory.join("memory.limit_in_bytes")),
                read(memory.join("memory.memsw.limit_in_bytes")),
                read(pids.join("pids.max")),
                read(cpu.join("cpu.cfs_quota_us")),
                read(cpu.join("cpu.cfs_period_us")),
            ]
        }
        None => {
            let dir = v2_cgroup_dir(berthd, name);
            let memory = read(dir.join("memory.max"));
            let swap = read(dir.join("memory.swap.max"));
            let memsw = match (memory.parse::<u64>(), swap.parse::<u64>()) {
                (Ok(m), Ok(s)) => (m + s).to_string(),
                _ => "max".to_string(),
            };
            let cpu_max = read(dir.join("cpu.max"));
            let (quota, period) = cpu_max.split_once(' ').expect("cpu.max");
            let quota = if quota == "max" { "-1" } else { quota };
            [
                memory,
                memsw,
                read(dir.join("pids.max")),
                quota.to_string(),
                period.to_string(),
            ]
        }
    }
}

#[test]
fn stats_show_limits_pids_and_every_running_container() {
    let berthd = daemon();
    let id = berthd
        .docker_ok(&[
            "run", "-d", "--name", "web", "--memory", "64m", "busybox", "sleep", "1000",
        ])
        .trim()
        .to_string();
    berthd.docker_ok(&["run", "-d", "--name", "other", "busybox", "sleep", "1000"]);
    berthd.docker_ok(&["run", "--name", "stopped", "busybox", "true"]);

    let out = berthd.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        "web",
    ]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    // c 312KiB / 64MiB 1
    assert_eq!(fields.len(), 5, "{out}");
    assert_eq!(fields[0], "web", "{out}");
    assert_eq!(fields[3], "64MiB", "{out}");
    assert!(
        fields[4].parse::<u64>().expect("pids") >= 1,
        "no process counted: {out}"
    );

    // Without names: the running containers, with the table's columns.
    let out = berthd.docker_ok(&["stats", "--no-stream"]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"] {
        assert!(header.contains(column), "{out}");
    }
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!out.contains("stopped"), "{out}");

    // stream=false pairs the sample with one taken a second before.
    let one = json(&curl_for(
        &berthd,
        "/containers/web/stats?stream=false",
        "20",
    ));
    assert_eq!(one["name"], "/web");
    assert_eq!(one["id"], id.as_str());
    assert_ne!(one["preread"], "0001-01-01T00:00:00Z", "{one}");
    assert!(
        one["precpu_stats"]["system_cpu_usage"].as_u64().is_some(),
        "{one}"
    );
    assert_eq!(one["memory_stats"]["limit"], 64 << 20, "{one}");
    // one-shot: no previous sample.
    let shot = json(&curl_for(
        &berthd,
        "/containers/web/stats?stream=false&one-shot=true",
        "20",
    ));
    assert_eq!(shot["preread"], "0001-01-01T00:00:00Z", "{shot}");
    assert!(
        shot["cpu_stats"]["online_cpus"].as_u64() >= Some(1),
        "{shot}"
    );
    // A stopped container: zeros, with its name and id.
    let stopped = json(&curl_for(
        &berthd,
        "/containers/stopped/stats?stream=false",
        "20",
    ));
    assert_eq!(stopped["name"], "/stopped");
    assert_eq!(stopped["read"], "0001-01-01T00:00:00Z");
    assert_eq!(stopped["memory_stats"], serde_json::json!({}));

    // Berth's one request for every running container.
    let all = json(&curl_for(&berthd, "/containers/stats", "20"));
    let all = all.as_array().expect("an array");
    let mut names: Vec<&str> = all.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["/other", "/web"]);
    for s in all {
        assert!(s["pids_stats"]["current"].as_u64() >= Some(1), "{s}");
        assert!(s["memory_stats"]["usage"].as_u64() > Some(0), "{s}");
        assert!(s["cpu_stats"]["system_cpu_usage"].as_u64() > Some(0), "{s}");
    }
    // DELETE of a container named like the path still removes it.
    berthd.docker_ok(&["rename", "other", "stats"]);
    berthd.docker_ok(&["rm", "-f", "stats"]);
    assert_eq!(
        berthd.docker_ok(&["ps", "--format", "{{.Names}}"]).trim(),
        "web"
    );
}

#[test]
fn streaming_stats_show_a_busy_containers_cpu() {
    let berthd = daemon();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "burn",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);

    // The API stream: one object a second, each compared with the last.
    let body = curl_for(&berthd, "/containers/burn/stats", "3.5");
    let samples: Vec<serde_json::Value> = body.lines().map(json).collect();
    assert!(samples.len() >= 3, "{body}");
    assert_eq!(samples[0]["preread"], "0001-01-01T00:00:00Z");
    for pair in samples.windows(2) {
        assert_eq!(pair[1]["preread"], pair[0]["read"]);
        assert_eq!(pair[1]["precpu_stats"], pair[0]["cpu_stats"]);
    }

    // The docker CLI's live view, read for a few seconds, then stopped.
    let mut child = berthd
        .docker_command()
        .args(["stats", "--format", "{{.Name}} {{.CPUPerc}}", "burn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker stats");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    std::thread::sleep(Duration::from_secs(5));
    // SIGKILL: docker stats keeps going after SIGTERM.
    let _ = child.kill();
    let _ = child.wait();
    let out = text(&reader.join().expect("reader"));
    let percents: Vec<f64> = out
        .split(['\n', '\x1b'])
        .filter_map(|l| {
            l.trim_start_matches(['[', 'H', 'J', 'K'])
                .strip_prefix("burn ")
        })
        .filter_map(|rest| {
            rest.split_whitespace()
                .next()?
                .strip_suffix('%')?
                .parse()
                .ok()
        })
        .collect();
    let best = percents.iter().copied().fold(0.0, f64::max);
    assert!(best > 10.0, "CPU % of a busy loop: {percents:?} in {out:?}");
}

#[test]
fn top_lists_the_containers_processes_and_port_nothing() {
    let berthd = daemon();
    berthd.docker_ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);
    let pid = inspect(&berthd, "web", "{{.State.Pid}}");

    let out = berthd.docker_ok(&["top", "web"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "{out}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].ends_with("sleep 1000"), "{out}");
    assert_eq!(
        rows[0].split_whitespace().nth(1),
        Some(pid.as_str()),
        "{out}"
    );

    let out = berthd.docker_ok(&["top", "web", "-o", "pid,comm"]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines, [vec!["PID", "COMMAND"], vec![pid.as_str(), "sleep"]]);

    let e = refused(&berthd, &["top", "web", "-o", "user=PID"]);
    assert!(e.contains("specifying \"user=PID\" is not allowed"), "{e}");

    // Network none: no published ports, nothing printed.
    let out = berthd.docker(&["port", "web"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "");

    berthd.docker_ok(&["stop", "-t", "0", "web"]);
    let e = refused(&berthd, &["top", "web"]);
    assert!(e.contains("is not running"), "{e}");
}

#[test]
fn update_changes_the_cgroup_and_the_stored_config() {
    let berthd = daemon();
    let id = berthd
        .docker_ok(&[
            "run", "-d", "--name", "web", "--memory", "64m", "busybox", "sleep", "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(
        limits(&berthd, "web"),
        [
            (64u64 << 20).to_string(),
            (128u64 << 20).to_string(),
            "max".into(),
            "-1".into(),
            "100000".into()
        ]
    );

    let out = berthd.docker_ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        "--restart",
        "on-failure:3",
        "web",
    ]);
    assert_eq!(out.trim(), "web");
    let updated = [
        (128u64 << 20).to_string(),
        (256u64 << 20).to_string(),
        "20".to_string(),
        "50000".to_string(),
        "100000".to_string(),
    ];
    assert_eq!(limits(&berthd, "web"), updated);
    let shown = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    let stored = format!(
        "{} {} 20 500000000 on-failure:3",
        128u64 << 20,
        256u64 << 20
    );
    assert_eq!(inspect(&berthd, "web", shown), stored);
    // `--until` is in whole seconds: the next one, so the events of this
    // second are in.
    let until = (unix_now() + 1).to_string();
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        "60s",
        "--until",
        &until,
        "--filter",
        "event=update",
        "--format",
        "{{.Actor.ID}}",
    ]);
    assert_eq!(events.trim(), id);

    // Refused with dockerd's messages, and nothing changes.
    for (args, message) in [
        (
            vec!["--memory", "4m"],
            "Minimum memory limit allowed is 6MB".to_string(),
        ),
        (
            vec!["--memory", "512m"],
            format!("Cannot update container {id}: Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"),
        ),
        (
            vec!["--memory", "300m", "--memory-swap", "200m"],
            "Minimum memoryswap limit should be larger than memory limit, see usage".to_string(),
        ),
        (
            vec!["--cpu-period", "50000"],
            format!("Cannot update container {id}: Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"),
        ),
        (
            vec!["--blkio-weight", "5"],
            "Range of blkio weight is from 10 to 1000".to_string(),
        ),
    ] {
        let mut full = vec!["update"];
        full.extend(&args);
        full.push("web");
        let e = refused(&berthd, &full);
        assert!(
            e.contains(&format!("Error response from daemon: {message}")),
            "{args:?}: {e}"
        );
        assert_eq!(limits(&berthd, "web"), updated, "{args:?}");
        assert_eq!(inspect(&berthd, "web", shown), stored, "{args:?}");
    }

    // The new limits survive a restart; a stopped container is updated in
    // its stored config and gets the limits at its next start.
    berthd.docker_ok(&["restart", "-t", "0", "web"]);
    assert_eq!(limits(&berthd, "web"), updated);
    berthd.docker_ok(&["stop", "-t", "0", "web"]);
    berthd.docker_ok(&["update", "--pids-limit", "30", "web"]);
    berthd.docker_ok(&["start", "web"]);
    assert_eq!(limits(&berthd, "web")[2], "30");
    assert_eq!(inspect(&berthd, "web", "{{.HostConfig.PidsLimit}}"), "30");

    // No restart policy for an auto-removed container.
    berthd.docker_ok(&[
        "run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "1000",
    ]);
    let e = refused(&berthd, &["update", "--restart", "always", "gone"]);
    assert!(
        e.contains(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        ),
        "{e}"
    );
}

#[test]
fn prune_removes_only_stopped_containers() {
    let berthd = daemon();
    berthd.docker_ok(&["run", "-d", "--name", "up", "busybox", "sleep", "1000"]);
    let exited = berthd
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "exited",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/data bs=1k count=300",
        ])
        .trim()
        .to_string();
    berthd.docker_ok(&["wait", "exited"]);
    let created = berthd
        .docker_ok(&["create", "--name", "created", "busybox", "true"])
        .trim()
        .to_string();
    berthd.docker_ok(&[
        "run", "--name", "kept", "--label", "keep=1", "busybox", "true",
    ]);

    let out = berthd.docker_ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    let mut deleted: Vec<&str> = out
        .lines()
        .filter(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    deleted.sort();
    let mut expected = vec![exited.as_str(), created.as_str()];
    expected.sort();
    assert_eq!(deleted, expected, "{out}");
    // The 300 kB the exited container wrote.
    let reclaimed = out
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("no total in {out}"));
    assert!(
        reclaimed.ends_with("kB") || reclaimed.ends_with("MB"),
        "{out}"
    );

    let left = berthd.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["kept", "up"]);

    let out = berthd.docker_ok(&["container", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(
        berthd
            .docker_ok(&["ps", "-a", "--format", "{{.Names}}"])
            .trim(),
        "up"
    );
    // `--until` is in whole seconds: the next one, so the events of this
    // second are in.
    let until = (unix_now() + 1).to_string();
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        "60s",
        "--until",
        &until,
        "--filter",
        "event=prune",
        "--format",
        "{{.Type}} {{.Action}} {{index .Actor.Attributes \"reclaimed\"}}",
    ]);
    assert_eq!(events.lines().count(), 2, "{events}");
    assert!(
        events.lines().all(|l| l.starts_with("container prune ")),
        "{events}"
    );

    let e = refused(
        &berthd,
        &["container", "prune", "-f", "--filter", "dangling=true"],
    );
    assert!(e.contains("invalid filter 'dangling'"), "{e}");
}
