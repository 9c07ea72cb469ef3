//! Seccomp user notification: with `linux.seccomp.listenerPath`, the
//! runtime hands the filter's listener fd to the agent listening there, with
//! the container process state the OCI spec describes.

use std::os::unix::net::UnixListener;
use std::time::Duration;

use berth_tests::{run_container, Bundle, Runtime};
use serde_json::{json, Value};

#[test]
fn agent_receives_the_listener_and_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).expect("bind the agent socket");
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("the runtime connects");
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fds) = berth_sys::socket::recv_with_fds(&conn, &mut buf).expect("message");
        let message: Value = serde_json::from_slice(&buf[..n]).expect("JSON state");
        // Closing the listener answers every pending and later notification
        // with ENOSYS, so the container goes on.
        let got_fd = fds.len();
        drop(fds);
        (message, got_fd)
    });

    let mut bundle = Bundle::busybox().expect("bundle");
    bundle
        .seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "listenerMetadata": "berth-test",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .shell("mkdir /tmp/notified; echo rc=$?");
    let output = run_container(&Runtime::under_test(), &bundle);
    let (message, fds) = agent.join().expect("agent thread");

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("rc=1"), "mkdir was not refused: {output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not implemented"),
        "ENOSYS after the agent closed the listener: {output:?}"
    );
    assert_eq!(fds, 1, "one listener fd: {message}");
    assert_eq!(message["fds"], json!(["seccompFd"]), "{message}");
    assert_eq!(message["metadata"], "berth-test", "{message}");
    assert_eq!(message["state"]["status"], "creating", "{message}");
    assert_eq!(
        message["state"]["bundle"],
        json!(bundle.path()),
        "{message}"
    );
    assert!(message["pid"].as_i64().is_some_and(|p| p > 1), "{message}");
}

#[test]
fn notify_without_a_listener_path_is_refused() {
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle
        .seccomp(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .shell("true");
    let output = run_container(&Runtime::under_test(), &bundle);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("listenerPath"),
        "{output:?}"
    );
}
