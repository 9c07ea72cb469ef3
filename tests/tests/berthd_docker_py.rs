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

/// More of what programs do with a running container: stats, top, archives
/// both ways, streamed exec and logs, diff, commit, attach socket, rename,
/// update, pause.
const SCRIPT_MORE: &str = r#"
import io, sys, tarfile, time, docker
client = docker.DockerClient(base_url="unix://" + sys.argv[1], version="1.41")
c = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 1000"], detach=True, name="more")
s = c.stats(stream=False)
assert s["memory_stats"]["usage"] > 0, s["memory_stats"]
assert "cpu_usage" in s["cpu_stats"], s["cpu_stats"]
stream = c.stats(stream=True, decode=True)
first = next(stream)
assert "pids_stats" in first, first
top = c.top()
assert "PID" in top["Titles"], top
assert any("sleep" in " ".join(p) for p in top["Processes"]), top

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"put by python\n"
    info = tarfile.TarInfo("hello.txt")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
assert c.put_archive("/tmp", buf.getvalue())
code, out = c.exec_run("cat /tmp/hello.txt")
assert (code, out) == (0, b"put by python\n"), (code, out)
bits, stat = c.get_archive("/tmp/hello.txt")
assert stat["name"] == "hello.txt" and stat["size"] == 14, stat
got = io.BytesIO(b"".join(bits))
with tarfile.open(fileobj=got) as t:
    assert t.extractfile("hello.txt").read() == b"put by python\n"

res = c.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; done"], stream=True)
assert b"".join(res.output) == b"1\n2\n3\n"
res = c.exec_run("sh -c 'echo o; echo e >&2'", demux=True)
assert res.output == (b"o\n", b"e\n"), res.output

changes = {d["Path"]: d["Kind"] for d in c.diff()}
assert changes.get("/tmp/hello.txt") == 1, changes
img = c.commit(repository="committed", tag="v1", message="from python")
assert client.images.get("committed:v1").id == img.id

c.rename("renamed")
c.reload()
assert c.name == "renamed", c.name
c.update(mem_limit="64m", memswap_limit="-1")
c.reload()
assert c.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024, c.attrs["HostConfig"]["Memory"]
c.pause()
c.reload()
assert c.status == "paused", c.status
c.unpause()

logs = c.logs(stream=True, follow=False)
assert b"".join(logs) == b"one\n"
c.remove(force=True)

# Attach through the hijacked socket: input in, output back.
c = client.containers.create("busybox", ["sh", "-c", "read line; echo got $line"], stdin_open=True, name="att")
sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
c.start()
sock._sock.sendall(b"ping\n")
deadline = time.time() + 10
data = b""
while b"got ping" not in data and time.time() < deadline:
    chunk = sock._sock.recv(4096)
    if not chunk:
        break
    data += chunk
assert b"got ping" in data, data
assert c.wait(timeout=10)["StatusCode"] == 0
c.remove()
client.images.remove("committed:v1")
print("ok")
"#;

#[test]
fn docker_py_works_with_a_running_container() {
    let berthd = Berthd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(SCRIPT_MORE).arg(berthd.socket());
    let out = output_with_timeout(&mut python, CLI_TIMEOUT).expect("python3");
    assert!(
        out.status.success(),
        "{}\nberthd log:\n{}",
        describe(&out),
        berthd.log()
    );
    assert_eq!(text(&out.stdout), "ok\n");
}
