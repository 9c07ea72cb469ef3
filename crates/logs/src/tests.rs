use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

/// 2024-01-01T00:00:00Z.
const T0: u64 = 1_704_067_200;

fn at(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_millis(millis)
}

fn ctx(dir: &Path) -> LogContext {
    LogContext {
        container_id: "c0ffee".repeat(10) + "abcd",
        container_name: "web".into(),
        image_name: "busybox:latest".into(),
        image_id: format!("sha256:{}", "e1".repeat(32)),
        labels: BTreeMap::from([
            ("app".to_string(), "shop".to_string()),
            ("com.example.team".to_string(), "infra".to_string()),
        ]),
        env: vec!["TZ=UTC".into(), "PATH=/bin".into()],
        dir: dir.to_path_buf(),
        daemon_name: "berthd".into(),
    }
}

fn config(driver: &str, opts: &[(&str, &str)]) -> LogConfig {
    LogConfig {
        driver: driver.to_string(),
        opts: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn msg(stream: Stream, line: &str, time: SystemTime) -> Message {
    Message {
        stream,
        line: line.as_bytes().to_vec(),
        time,
        attrs: BTreeMap::new(),
    }
}

fn out(line: &str, millis: u64) -> Message {
    msg(Stream::Stdout, line, at(millis))
}

fn both() -> ReadOptions {
    ReadOptions {
        stdout: true,
        stderr: true,
        ..ReadOptions::default()
    }
}

fn read(config: &LogConfig, ctx: &LogContext, options: &ReadOptions) -> Vec<Message> {
    let mut got = Vec::new();
    read_logs(config, ctx, options, &AtomicBool::new(false), &mut |m| {
        got.push(m);
        true
    })
    .unwrap();
    got
}

fn lines(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.line).into_owned())
        .collect()
}

/// Writes `line N\n` for each N, N milliseconds after T0.
fn write_numbered(config: &LogConfig, ctx: &LogContext, range: std::ops::Range<u64>) {
    let mut w = open_writer(config, ctx).unwrap();
    for i in range {
        w.write(&out(&format!("line {i:03}\n"), i)).unwrap();
    }
    w.close().unwrap();
}

fn numbers(messages: &[Message]) -> Vec<u64> {
    lines(messages)
        .iter()
        .map(|l| l.trim_end().trim_start_matches("line ").parse().unwrap())
        .collect()
}

/// Visible names (the rotation lock file is hidden).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn json_log(ctx: &LogContext) -> PathBuf {
    ctx.dir.join(format!("{}-json.log", ctx.container_id))
}

#[test]
fn json_file_writes_dockerds_exact_lines() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut w = open_writer(&config("json-file", &[]), &ctx).unwrap();
    let t = at(0) + Duration::from_nanos(123_456_789);
    w.write(&msg(Stream::Stdout, "hello\n", t)).unwrap();
    // Written at once, before close: `docker logs` sees it.
    let first = fs::read_to_string(json_log(&ctx)).unwrap();
    assert_eq!(
        first,
        "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00.123456789Z\"}\n"
    );
    w.write(&msg(Stream::Stderr, "no newline", at(1000)))
        .unwrap();
    w.write(&msg(Stream::Stdout, "say \"hi\" <b>\t\\\n", at(2500)))
        .unwrap();
    w.write(&msg(Stream::Stdout, "", at(2500))).unwrap();
    w.close().unwrap();
    let text = fs::read_to_string(json_log(&ctx)).unwrap();
    let expected = [
        r#"{"log":"hello\n","stream":"stdout","time":"2024-01-01T00:00:00.123456789Z"}"#,
        r#"{"log":"no newline","stream":"stderr","time":"2024-01-01T00:00:01Z"}"#,
        r#"{"log":"say \"hi\" \u003cb\u003e\u0009\\\n","stream":"stdout","time":"2024-01-01T00:00:02.5Z"}"#,
        r#"{"stream":"stdout","time":"2024-01-01T00:00:02.5Z"}"#,
    ];
    assert_eq!(text, expected.join("\n") + "\n");
    let back = read(&config("json-file", &[]), &ctx, &both());
    assert_eq!(
        lines(&back),
        ["hello\n", "no newline", "say \"hi\" <b>\t\\\n", ""]
    );
    assert_eq!(back[0].time, t);
    assert_eq!(back[1].stream, Stream::Stderr);
}

#[test]
fn json_file_attrs_come_from_labels_env_and_tag() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config(
        "json-file",
        &[
            ("labels", "app"),
            ("env", "TZ"),
            ("tag", "{{.Name}}/{{.ID}}"),
        ],
    );
    let mut w = open_writer(&cfg, &ctx).unwrap();
    w.write(&out("x\n", 0)).unwrap();
    w.close().unwrap();
    assert_eq!(
        fs::read_to_string(json_log(&ctx)).unwrap(),
        "{\"log\":\"x\\n\",\"stream\":\"stdout\",\"attrs\":{\"TZ\":\"UTC\",\"app\":\"shop\",\
         \"tag\":\"web/c0ffeec0ffee\"},\"time\":\"2024-01-01T00:00:00Z\"}\n"
    );
    let back = read(&cfg, &ctx, &both());
    assert_eq!(back[0].attrs.get("app").map(String::as_str), Some("shop"));
    assert_eq!(
        back[0].attrs.get("tag").map(String::as_str),
        Some("web/c0ffeec0ffee")
    );
}

#[test]
fn rotation_keeps_max_file_files_and_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("json-file", &[("max-size", "300"), ("max-file", "3")]);
    write_numbered(&cfg, &ctx, 0..30);
    let base = json_log(&ctx).to_string_lossy().into_owned();
    let names = names_in(dir.path());
    let file = |suffix: &str| format!("{}-json.log{suffix}", ctx.container_id);
    assert_eq!(names, [file(""), file(".1"), file(".2")]);
    let mut on_disk = Vec::new();
    for suffix in [".2", ".1", ""] {
        let text = fs::read_to_string(format!("{base}{suffix}")).unwrap();
        assert!(text.len() <= 300, "{suffix} holds {} bytes", text.len());
        assert!(text.ends_with('\n'));
        on_disk.extend(text.lines().map(str::to_string));
    }
    let back = read(&cfg, &ctx, &both());
    let got = numbers(&back);
    // Oldest first, no gap, ending with the last line written.
    let first = got[0];
    assert!(first > 0, "the oldest lines were dropped");
    assert_eq!(got, (first..30).collect::<Vec<_>>());
    assert_eq!(got.len(), on_disk.len());
    // Tail spans the rotated files.
    let tail = read(
        &cfg,
        &ctx,
        &ReadOptions {
            tail: Some(7),
            ..both()
        },
    );
    assert_eq!(numbers(&tail), (23..30).collect::<Vec<_>>());
}

#[test]
fn compressed_rotation_writes_gzip_files_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config(
        "json-file",
        &[("max-size", "300"), ("max-file", "3"), ("compress", "true")],
    );
    write_numbered(&cfg, &ctx, 0..30);
    let id = &ctx.container_id;
    assert_eq!(
        names_in(dir.path()),
        [
            format!("{id}-json.log"),
            format!("{id}-json.log.1.gz"),
            format!("{id}-json.log.2.gz")
        ]
    );
    // A real gzip file of json lines, with dockerd's lastTime header.
    let gz = fs::File::open(dir.path().join(format!("{id}-json.log.1.gz"))).unwrap();
    let mut decoder = flate2::read::GzDecoder::new(gz);
    let mut text = String::new();
    decoder.read_to_string(&mut text).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let extra: serde_json::Value =
        serde_json::from_slice(decoder.header().unwrap().extra().unwrap()).unwrap();
    assert_eq!(extra["lastTime"], last["time"]);

    let got = numbers(&read(&cfg, &ctx, &both()));
    let first = got[0];
    assert!(first > 0);
    assert_eq!(got, (first..30).collect::<Vec<_>>());
    let tail = read(
        &cfg,
        &ctx,
        &ReadOptions {
            tail: Some(9),
            ..both()
        },
    );
    assert_eq!(numbers(&tail), (21..30).collect::<Vec<_>>());
}

#[test]
fn json_file_defaults_are_capped() {
    let opts = |c: &LogConfig| {
        effective_opts(c)
            .into_iter()
            .collect::<Vec<(String, String)>>()
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        opts(&config("json-file", &[])),
        [pair("max-file", "5"), pair("max-size", "20m")]
    );
    assert_eq!(
        opts(&config("", &[("max-file", "2")])),
        [pair("max-file", "2"), pair("max-size", "20m")]
    );
    assert_eq!(
        opts(&config("json-file", &[("max-size", "-1")])),
        [pair("max-size", "-1")]
    );
    assert_eq!(
        opts(&config("json-file", &[("max-size", "1m")])),
        [pair("max-size", "1m")]
    );
    assert_eq!(opts(&config("local", &[])), []);
    assert!(validate(&config("json-file", &[("max-size", "-1")])).is_ok());

    // With no options, the file rotates at 20,000,000 bytes.
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("json-file", &[]);
    let line = "x".repeat(16 * 1024) + "\n";
    let mut w = open_writer(&cfg, &ctx).unwrap();
    for i in 0..1300 {
        w.write(&out(&line, i)).unwrap();
    }
    w.close().unwrap();
    let current = fs::metadata(json_log(&ctx)).unwrap().len();
    let rotated = fs::metadata(dir.path().join(format!("{}-json.log.1", ctx.container_id)))
        .unwrap()
        .len();
    assert!(rotated <= 20_000_000 && rotated > 19_900_000, "{rotated}");
    assert!(current < 2_000_000, "{current}");
}

/// Ten messages, stdout at even milliseconds, stderr at odd ones.
fn write_mixed(cfg: &LogConfig, ctx: &LogContext) {
    let mut w = open_writer(cfg, ctx).unwrap();
    for i in 0..10 {
        let stream = if i % 2 == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        w.write(&msg(stream, &format!("line {i:03}\n"), at(i)))
            .unwrap();
    }
    w.close().unwrap();
}

#[test]
fn reads_filter_by_tail_since_until_and_stream() {
    for cfg in [
        config("json-file", &[]),
        config("local", &[]),
        config("json-file", &[("max-size", "200"), ("max-file", "10")]),
        config("local", &[("max-size", "100"), ("max-file", "10")]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        write_mixed(&cfg, &ctx);
        let get = |o: ReadOptions| numbers(&read(&cfg, &ctx, &o));
        let what = format!("{cfg:?}");
        assert_eq!(get(both()), (0..10).collect::<Vec<_>>(), "{what}");
        let stdout = ReadOptions {
            stdout: true,
            ..ReadOptions::default()
        };
        assert_eq!(get(stdout.clone()), [0, 2, 4, 6, 8], "{what}");
        let stderr = ReadOptions {
            stderr: true,
            ..ReadOptions::default()
        };
        assert_eq!(
            get(ReadOptions {
                tail: Some(2),
                ..stderr
            }),
            [7, 9],
            "{what}"
        );
        assert_eq!(
            get(ReadOptions {
                tail: Some(3),
                ..both()
            }),
            [7, 8, 9],
            "{what}"
        );
        assert_eq!(
            get(ReadOptions {
                tail: Some(0),
                ..both()
            }),
            [] as [u64; 0],
            "{what}"
        );
        assert_eq!(
            get(ReadOptions {
                tail: Some(50),
                ..both()
            })
            .len(),
            10,
            "{what}"
        );
        assert_eq!(
            get(ReadOptions {
                since: Some(at(5)),
                ..both()
            }),
            [5, 6, 7, 8, 9],
            "{what}"
        );
        assert_eq!(
            get(ReadOptions {
                until: Some(at(3)),
                ..both()
            }),
            [0, 1, 2, 3],
            "{what}"
        );
        let window = ReadOptions {
            since: Some(at(2)),
            until: Some(at(4)),
            ..both()
        };
        assert_eq!(get(window), [2, 3, 4], "{what}");
        // Tail first, then since, as dockerd.
        let tail_since = ReadOptions {
            tail: Some(3),
            since: Some(at(8)),
            ..both()
        };
        assert_eq!(get(tail_since), [8, 9], "{what}");
        // Stream filter before tail.
        assert_eq!(
            get(ReadOptions {
                tail: Some(2),
                ..stdout
            }),
            [6, 8],
            "{what}"
        );
    }
}

#[test]
fn local_driver_round_trips_messages_and_compresses_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("local", &[]);
    let mut w = open_writer(&cfg, &ctx).unwrap();
    let sent = [
        msg(Stream::Stdout, "one\n", at(0) + Duration::from_nanos(7)),
        msg(Stream::Stderr, "two, partial", at(1)),
        msg(Stream::Stdout, "bytes \u{1f600} \"\n", at(2)),
    ];
    for m in &sent {
        w.write(m).unwrap();
    }
    assert_eq!(read(&cfg, &ctx, &both()), sent);
    w.close().unwrap();
    assert!(dir.path().join("local-logs/container.log").is_file());

    let rotating = config("local", &[("max-size", "100"), ("max-file", "3")]);
    write_numbered(&rotating, &ctx, 3..40);
    let names = names_in(&dir.path().join("local-logs"));
    assert_eq!(
        names,
        ["container.log", "container.log.1.gz", "container.log.2.gz"]
    );
    let got = numbers(&read(&rotating, &ctx, &both()));
    let first = got[0];
    assert!(first > 3);
    assert_eq!(got, (first..40).collect::<Vec<_>>());
}

#[test]
fn torn_or_corrupt_records_are_skipped_and_cut_on_reopen() {
    for (driver, torn) in [
        ("json-file", &b"{\"log\":\"par"[..]),
        ("local", &[0u8, 0, 0, 40, 1, 0, 0][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        let cfg = config(driver, &[]);
        let path = if driver == "local" {
            dir.path().join("local-logs/container.log")
        } else {
            json_log(&ctx)
        };
        write_numbered(&cfg, &ctx, 0..2);
        if driver == "json-file" {
            // A corrupt line in the middle is stepped over.
            let mut text = fs::read(&path).unwrap();
            text.extend_from_slice(b"not json\n{\"log\":\"x\"}\n");
            fs::write(&path, text).unwrap();
        }
        write_numbered(&cfg, &ctx, 2..3);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(torn);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(numbers(&read(&cfg, &ctx, &both())), [0, 1, 2], "{driver}");
        assert_eq!(
            numbers(&read(
                &cfg,
                &ctx,
                &ReadOptions {
                    tail: Some(2),
                    ..both()
                }
            )),
            [1, 2],
            "{driver}"
        );
        // The next writer cuts the torn record off and appends cleanly.
        write_numbered(&cfg, &ctx, 3..4);
        assert_eq!(
            numbers(&read(&cfg, &ctx, &both())),
            [0, 1, 2, 3],
            "{driver}"
        );
        let after = fs::read(&path).unwrap();
        let kept = bytes.len() - torn.len();
        assert_eq!(after[..kept], bytes[..kept], "{driver}");
        assert!(
            !after[kept..].starts_with(torn),
            "{driver}: torn bytes kept"
        );
    }
}

/// Follows in a thread, collecting messages until stopped.
struct Follower {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Message>>>,
    handle: Option<thread::JoinHandle<Result<()>>>,
}

impl Follower {
    fn start(cfg: &LogConfig, ctx: &LogContext, options: ReadOptions) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (cfg, ctx) = (cfg.clone(), ctx.clone());
        let (s, g) = (stop.clone(), got.clone());
        let handle = thread::spawn(move || {
            read_logs(&cfg, &ctx, &options, &s, &mut |m| {
                g.lock().unwrap().push(m);
                true
            })
        });
        Follower {
            stop,
            got,
            handle: Some(handle),
        }
    }

    fn wait_for(&self, count: usize) -> Vec<Message> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.got.lock().unwrap().len() < count && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        self.got.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<Message> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap().unwrap();
        }
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn follow_survives_rotation() {
    for opts in [
        vec![("max-size", "400"), ("max-file", "100")],
        vec![
            ("max-size", "400"),
            ("max-file", "100"),
            ("compress", "true"),
        ],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        let cfg = config("json-file", &opts);
        write_numbered(&cfg, &ctx, 0..3);
        let follower = Follower::start(
            &cfg,
            &ctx,
            ReadOptions {
                follow: true,
                ..both()
            },
        );
        let mut w = open_writer(&cfg, &ctx).unwrap();
        let mut next = 3;
        for _ in 0..6 {
            // Each burst rotates about ten times, mostly between two polls
            // of the follower, sometimes while it reads.
            for _ in 0..50 {
                w.write(&out(&format!("line {next:03}\n"), next)).unwrap();
                next += 1;
            }
            thread::sleep(Duration::from_millis(70));
        }
        w.close().unwrap();
        follower.wait_for(next as usize);
        let got = numbers(&follower.finish());
        assert_eq!(got, (0..next).collect::<Vec<_>>(), "{opts:?}");
        let files = names_in(dir.path()).len();
        assert!(files > 40, "{opts:?}: only {files} files");
    }
}

#[test]
fn follow_picks_up_a_record_written_in_two_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("json-file", &[]);
    write_numbered(&cfg, &ctx, 0..1);
    let follower = Follower::start(
        &cfg,
        &ctx,
        ReadOptions {
            follow: true,
            tail: Some(1),
            ..both()
        },
    );
    assert_eq!(numbers(&follower.wait_for(1)), [0]);
    let path = json_log(&ctx);
    let record = r#"{"log":"line 001\n","stream":"stdout","time":"2024-01-01T00:00:00.001Z"}"#;
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &record.as_bytes()[..20]).unwrap();
    thread::sleep(Duration::from_millis(250));
    std::io::Write::write_all(&mut file, &record.as_bytes()[20..]).unwrap();
    std::io::Write::write_all(&mut file, b"\n").unwrap();
    follower.wait_for(2);
    assert_eq!(numbers(&follower.finish()), [0, 1]);
}

#[test]
fn follow_ends_on_stop_until_or_sink() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("local", &[]);
    write_numbered(&cfg, &ctx, 0..3);

    let started = Instant::now();
    let follower = Follower::start(
        &cfg,
        &ctx,
        ReadOptions {
            follow: true,
            ..both()
        },
    );
    follower.wait_for(3);
    thread::sleep(Duration::from_millis(100));
    let stopped = Instant::now();
    assert_eq!(follower.finish().len(), 3);
    // Noticed within a poll (100 ms), with room for a loaded machine.
    assert!(
        stopped.elapsed() < Duration::from_millis(600),
        "{:?}",
        stopped.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let until = SystemTime::now() + Duration::from_millis(300);
    let started = Instant::now();
    let got = read(
        &cfg,
        &ctx,
        &ReadOptions {
            follow: true,
            until: Some(until),
            ..both()
        },
    );
    assert_eq!(got.len(), 3);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );

    let mut seen = 0;
    let options = ReadOptions {
        follow: true,
        ..both()
    };
    read_logs(&cfg, &ctx, &options, &AtomicBool::new(false), &mut |_| {
        seen += 1;
        seen < 2
    })
    .unwrap();
    assert_eq!(seen, 2);
}

#[test]
fn follow_waits_for_the_file_to_appear() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = config("json-file", &[]);
    assert!(read(&cfg, &ctx, &both()).is_empty());
    let follower = Follower::start(
        &cfg,
        &ctx,
        ReadOptions {
            follow: true,
            ..both()
        },
    );
    thread::sleep(Duration::from_millis(150));
    write_numbered(&cfg, &ctx, 0..2);
    follower.wait_for(2);
    assert_eq!(numbers(&follower.finish()), [0, 1]);
}

#[test]
fn validate_refuses_bad_options_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("log.sock");
    let _listener = UnixDatagram::bind(&sock).unwrap();
    let unixgram = format!("unixgram://{}", sock.display());
    type Opts<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&str, Opts<'_>, &str)] = &[
        (
            "json-file",
            &[("foo", "bar")],
            "unknown log opt 'foo' for json-file log driver",
        ),
        (
            "json-file",
            &[("max-size", "10x")],
            "\"10x\" for log opt 'max-size'",
        ),
        ("json-file", &[("max-size", "0")], "'max-size'"),
        (
            "json-file",
            &[("max-file", "0")],
            "\"0\" for log opt 'max-file'",
        ),
        ("json-file", &[("max-file", "many")], "'max-file'"),
        (
            "json-file",
            &[("max-size", "-1"), ("max-file", "3")],
            "'max-file'",
        ),
        (
            "json-file",
            &[("compress", "maybe")],
            "\"maybe\" for log opt 'compress'",
        ),
        (
            "json-file",
            &[("compress", "true"), ("max-size", "1m")],
            "'compress'",
        ),
        ("json-file", &[("tag", "{{.Bogus}}")], "'tag'"),
        ("json-file", &[("labels-regex", "(")], "'labels-regex'"),
        ("json-file", &[("mode", "fast")], "'mode'"),
        (
            "json-file",
            &[("max-buffer-size", "4m")],
            "'max-buffer-size'",
        ),
        (
            "local",
            &[("labels", "a")],
            "unknown log opt 'labels' for local log driver",
        ),
        ("local", &[("max-file", "1")], "'max-file'"),
        ("local", &[("max-size", "big")], "'max-size'"),
        (
            "syslog",
            &[("syslog-address", "udp://host:99999")],
            "'syslog-address'",
        ),
        (
            "syslog",
            &[("syslog-address", "localhost:514")],
            "'syslog-address'",
        ),
        (
            "syslog",
            &[("syslog-facility", "nope")],
            "\"nope\" for log opt 'syslog-facility'",
        ),
        ("syslog", &[("syslog-format", "rfc9999")], "'syslog-format'"),
        (
            "syslog",
            &[("max-size", "1m")],
            "unknown log opt 'max-size' for syslog log driver",
        ),
        (
            "journald",
            &[("max-size", "1m")],
            "unknown log opt 'max-size' for journald log driver",
        ),
        ("fluentbit", &[], "unknown log driver \"fluentbit\""),
    ];
    for (driver, opts, expected) in cases {
        let err = validate(&config(driver, opts)).unwrap_err().to_string();
        assert!(err.contains(expected), "{driver} {opts:?}: {err}");
    }
    assert!(matches!(
        validate(&config("json-file", &[("foo", "1")])),
        Err(Error::UnknownOption { .. })
    ));
    let good: &[(&str, Opts<'_>)] = &[
        ("json-file", &[]),
        ("", &[]),
        (
            "json-file",
            &[
                ("max-size", "10k"),
                ("max-file", "3"),
                ("compress", "true"),
                ("labels", "app"),
                ("labels-regex", "^com\\."),
                ("env", "TZ"),
                ("env-regex", "^P"),
                ("tag", "{{.Name}}"),
            ],
        ),
        (
            "json-file",
            &[("mode", "non-blocking"), ("max-buffer-size", "4m")],
        ),
        ("local", &[]),
        (
            "local",
            &[("max-file", "1"), ("compress", "false"), ("max-size", "1g")],
        ),
        ("none", &[("anything", "goes")]),
        (
            "syslog",
            &[
                ("syslog-format", "rfc5424micro"),
                ("syslog-facility", "local0"),
                ("syslog-address", "udp://127.0.0.1:514"),
                ("tag", "{{.ImageName}}"),
            ],
        ),
        ("syslog", &[("syslog-address", unixgram.as_str())]),
        ("journald", &[("tag", "x"), ("labels", "app")]),
    ];
    for (driver, opts) in good {
        let result = validate(&config(driver, opts));
        assert!(result.is_ok(), "{driver} {opts:?}: {result:?}");
    }
}

#[test]
fn none_syslog_and_journald_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut w = open_writer(&config("none", &[]), &ctx).unwrap();
    w.write(&out("gone\n", 0)).unwrap();
    w.close().unwrap();
    assert!(names_in(dir.path()).is_empty());
    for driver in ["none", "syslog", "journald"] {
        let err = read_logs(
            &config(driver, &[]),
            &ctx,
            &both(),
            &AtomicBool::new(false),
            &mut |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, Error::ReadingUnsupported), "{driver}");
        assert_eq!(
            err.to_string(),
            "configured logging driver does not support reading"
        );
    }
}

#[test]
fn disk_usage_and_removal_cover_every_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    fs::write(dir.path().join("config.v2.json"), b"{}").unwrap();
    let cfg = config(
        "json-file",
        &[("max-size", "300"), ("max-file", "4"), ("compress", "true")],
    );
    write_numbered(&cfg, &ctx, 0..40);
    let expected: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(expected > 600);
    assert_eq!(disk_usage(&cfg, &ctx), expected);
    let local = config("local", &[("max-size", "100")]);
    write_numbered(&local, &ctx, 0..20);
    assert!(disk_usage(&local, &ctx) > 0);
    assert!(dir
        .path()
        .join(format!(".{}-json.log.lock", ctx.container_id))
        .exists());
    remove_logs(&ctx).unwrap();
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["config.v2.json"]);
    assert_eq!(disk_usage(&cfg, &ctx), 0);
    remove_logs(&ctx).unwrap();
}

fn host() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn syslog_sends_dockerds_formats_to_a_unix_datagram_socket() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let path = dir.path().join("syslog.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let address = format!("unixgram://{}", path.display());
    let t = at(0) + Duration::from_nanos(123_456_789);
    let local = chrono::DateTime::<chrono::Local>::from(t);
    let stamp = local.format("%b %e %H:%M:%S").to_string();
    let pid = std::process::id();

    let mut w = open_writer(
        &config(
            "syslog",
            &[
                ("syslog-address", address.as_str()),
                ("syslog-format", "rfc5424"),
                ("syslog-facility", "local0"),
                ("tag", "{{.Name}}"),
            ],
        ),
        &ctx,
    )
    .unwrap();
    w.write(&msg(Stream::Stdout, "hello\n", t)).unwrap();
    let rfc3339 = local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        receive(&server),
        format!("<134>1 {rfc3339} {} web {pid} web - hello\n", host())
    );
    w.close().unwrap();

    let mut w = open_writer(
        &config(
            "syslog",
            &[
                ("syslog-address", address.as_str()),
                ("syslog-format", "rfc5424micro"),
            ],
        ),
        &ctx,
    )
    .unwrap();
    w.write(&msg(Stream::Stderr, "oops", t)).unwrap();
    let rfc3339 = local.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert_eq!(
        receive(&server),
        format!(
            "<27>1 {rfc3339} {} c0ffeec0ffee {pid} c0ffeec0ffee - oops\n",
            host()
        )
    );

    let mut w = open_writer(
        &config(
            "syslog",
            &[
                ("syslog-address", address.as_str()),
                ("syslog-format", "rfc3164"),
            ],
        ),
        &ctx,
    )
    .unwrap();
    w.write(&msg(Stream::Stderr, "oops\n", t)).unwrap();
    assert_eq!(
        receive(&server),
        format!("<27>{stamp} {} c0ffeec0ffee[{pid}]: oops\n", host())
    );

    // dockerd's default format leaves the hostname out.
    let mut w = open_writer(
        &config("syslog", &[("syslog-address", address.as_str())]),
        &ctx,
    )
    .unwrap();
    w.write(&msg(Stream::Stdout, "partial", t)).unwrap();
    assert_eq!(
        receive(&server),
        format!("<30>{stamp} c0ffeec0ffee[{pid}]: partial\n")
    );
}

/// Parses the journal's native protocol into (name, value) pairs.
fn journal_fields(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'=' || b == b'\n').unwrap();
        let name = String::from_utf8(data[..end].to_vec()).unwrap();
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            fields.push((name, rest[..nl].to_vec()));
            data = &rest[nl + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.push((name, rest[8..8 + len].to_vec()));
            assert_eq!(rest[8 + len], b'\n');
            data = &rest[9 + len..];
        }
    }
    fields
}

#[test]
fn journald_sends_native_protocol_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let path = dir.path().join("journal.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let opts = config(
        "journald",
        &[("labels", "com.example.team"), ("tag", "{{.Name}}")],
    )
    .opts;
    let mut w = journald::open(&opts, &ctx, &path).unwrap();

    w.write(&msg(Stream::Stderr, "first\nsecond\n", at(1)))
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = server.recv(&mut buf).unwrap();
    let raw = &buf[..n];
    let mut binary = b"MESSAGE\n".to_vec();
    binary.extend_from_slice(&12u64.to_le_bytes());
    binary.extend_from_slice(b"first\nsecond\n");
    assert!(raw.starts_with(&binary), "{}", String::from_utf8_lossy(raw));
    let fields: BTreeMap<String, String> = journal_fields(raw)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    let id = ctx.container_id.clone();
    let expected: BTreeMap<String, String> = [
        ("MESSAGE", "first\nsecond"),
        ("PRIORITY", "3"),
        ("SYSLOG_TIMESTAMP", "2024-01-01T00:00:00.001Z"),
        ("CONTAINER_ID", &id[..12]),
        ("CONTAINER_ID_FULL", &id),
        ("CONTAINER_NAME", "web"),
        ("CONTAINER_TAG", "web"),
        ("SYSLOG_IDENTIFIER", "web"),
        ("IMAGE_NAME", "busybox:latest"),
        ("COM_EXAMPLE_TEAM", "infra"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(fields, expected);

    w.write(&msg(Stream::Stdout, "hi", at(2))).unwrap();
    let n = server.recv(&mut buf).unwrap();
    let fields = journal_fields(&buf[..n]);
    assert!(buf[..n].starts_with(b"MESSAGE=hi\nPRIORITY=6\nCONTAINER_PARTIAL_MESSAGE=true\n"));
    assert!(fields.contains(&("CONTAINER_ID".to_string(), id.as_bytes()[..12].to_vec())));
}

#[test]
fn journald_passes_a_memfd_for_messages_too_big_for_a_datagram() {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let path = dir.path().join("journal.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut w = journald::open(&BTreeMap::new(), &ctx, &path).unwrap();
    let big = "y".repeat(8 << 20) + "\n";
    w.write(&msg(Stream::Stdout, &big, at(0))).unwrap();

    let mut data = [0u8; 16];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let received = recvmsg::<UnixAddr>(
        server.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let fd = received
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a file descriptor");
    // Read through /proc: taking ownership of a raw fd would need unsafe.
    let contents = fs::read(format!("/proc/self/fd/{fd}")).unwrap();
    let fields = journal_fields(&contents);
    assert_eq!(fields[0].0, "MESSAGE");
    assert_eq!(fields[0].1.len(), 8 << 20);
}

#[test]
fn journald_without_a_socket_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let missing = dir.path().join("no-journal.sock");
    let err = journald::open(&BTreeMap::new(), &ctx, &missing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("journald is not enabled on this host"),
        "{err}"
    );
    assert!(err.contains(&missing.display().to_string()), "{err}");
}
