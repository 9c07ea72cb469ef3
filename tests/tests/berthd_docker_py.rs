#![forbid(unsafe_code)]
//! docker-py (Debian's python3-docker) against berthd: the container calls
//! a Python program makes (run with and without detach, reload/attrs,
//! logs, exec_run, wait, stop, kill, remove, list with filters).

use std::process::Command;

use berth_tests::berthd::Berthd;
use berth_tests::host::{describe, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout};

const SCRIPT: &str = r#"
import sys, docker
client = docker.DockerClient(base_url="unix://" + sys.argv[1], version="auto")
out = client.containers.run("busybox", ["sh", "-c", "echo hello; echo err >&2"], remove=True, stderr=True)
# stdout and stderr are separate pipes: their relative order is not kept
# (nor is it by dockerd).
assert sorted(out.splitlines()) == [b"err", b"hello"], out
c = client.containers.run("busybox", ["sh", "-c", "echo up; sleep 1000"], detach=True, name="py", labels={"k": "v"})
c.reload()
assert c.status == "running", c.status
assert c.name == "py", c.name
assert c.attrs["Config"]["Labels"] == {"k": "v"}, c.attrs["Config"]["Labels"]
assert c.attrs["State"]["Pid"] > 0
assert c.image.tags == ["busybox:latest"], c.image.tags
assert [x.name for x in client.containers.list(filters={"label": "k=v"})] == ["py"]
code, output = c.exec_run(["sh", "-c", "echo from exec; exit 3"])
assert (code, output) == (3, b"from exec\n"), (code, output)
code, output = c.exec_run("id -u", user="65534")
assert (code, output) == (0, b"65534\n"), (code, output)
assert c.logs() == b"up\n", c.logs()
assert b"up" in c.logs(timestamps=True)
c.kill(signal="SIGKILL")
result = c.wait()
assert result["StatusCode"] == 137, result
c.reload()
assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137, c.attrs["State"]
c.start()
c.stop(timeout=1)
c.remove()
assert client.containers.list(all=True) == []
try:
    client.containers.run("busybox", ["no-such-command"], remove=True)
    raise SystemExit("expected a failure")
except docker.errors.APIError as e:
    assert "executable file not found" in str(e), str(e)
print("ok")
"#;

#[test]
fn docker_py_drives_containers() {
    let berthd = Berthd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    // Debian's interpreter and python3-docker, as scripts/test.sh installs them.
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(SCRIPT).arg(berthd.socket());
    let out = output_with_timeout(&mut python, CLI_TIMEOUT).expect("python3");
    assert!(
        out.status.success(),
        "{}\nberthd log:\n{}",
        describe(&out),
        berthd.log()
    );
    assert_eq!(text(&out.stdout), "ok\n");
}
