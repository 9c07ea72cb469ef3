#!/usr/bin/env bash
# The main job: builds Berth, starts berthd with its defaults (SQLite
# metadata and content store under /var/lib/berth, API on /run/berth.sock),
# imports a busybox image made from Debian's static busybox, shows it with the
# docker CLI, then unpacks the image saved by berthd into an OCI bundle and
# runs a shell in it with `berth-runtime run`, showing what the container sees.
# (berthd runs containers itself once the containers work lands.) Run it as
# root on Debian 12. The temporary files, the demo image and a berthd it
# started are removed when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/demo.sh: run as root (containers need namespaces, cgroups and mounts)" >&2
    exit 1
fi

missing=()
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ -x /usr/local/bin/docker ]; then
    docker=/usr/local/bin/docker
else
    docker=/usr/bin/docker
    [ -x "$docker" ] || missing+=(docker.io)
fi
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

unset CARGO_TARGET_DIR
cargo build --release --bin berth-runtime --bin berthd --bin berth
runtime="$PWD/target/release/berth-runtime"
berthd="$PWD/target/release/berthd"
socket=/run/berth.sock
export DOCKER_HOST="unix://$socket"

work="$(mktemp -d /tmp/berth-demo.XXXXXX)"
id="berth-demo-$$"
berthd_pid=""
cleanup() {
    "$runtime" --root "$work/state" delete --force "$id" >/dev/null 2>&1 || true
    "$docker" rmi berth-demo/busybox:latest >/dev/null 2>&1 || true
    if [ -n "$berthd_pid" ]; then
        kill -TERM "$berthd_pid" 2>/dev/null || true
        wait "$berthd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# The container must be able to reach its rootfs through the bundle.
chmod 755 "$work"

# A busybox root filesystem, as an image tarball.
src="$work/src"
mkdir -p "$src"/{bin,etc,dev,proc,sys,tmp,root}
cp /bin/busybox "$src/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$src/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$src/etc/passwd"
echo 'root:x:0:' >"$src/etc/group"
tar -C "$src" -cf "$work/busybox.tar" .

# berthd with its defaults, unless one already answers on the socket.
if ! "$docker" version >/dev/null 2>&1; then
    echo "+ berthd (data root /var/lib/berth, API on $socket)" >&2
    "$berthd" >"$work/berthd.log" 2>&1 &
    berthd_pid=$!
    for _ in $(seq 1 100); do
        "$docker" version >/dev/null 2>&1 && break
        kill -0 "$berthd_pid" 2>/dev/null || { cat "$work/berthd.log" >&2; exit 1; }
        sleep 0.1
    done
fi
echo "+ docker version --format '{{.Server.Platform.Name}} {{.Server.Version}}'" >&2
"$docker" version --format '{{.Server.Platform.Name}} {{.Server.Version}}'
echo "+ docker import --change 'CMD [\"/bin/sh\"]' busybox.tar berth-demo/busybox" >&2
"$docker" import --change 'CMD ["/bin/sh"]' "$work/busybox.tar" berth-demo/busybox
echo "+ docker images berth-demo/busybox" >&2
"$docker" images berth-demo/busybox
echo "+ berth images berth-demo/busybox   (Berth's own CLI)" >&2
"$PWD/target/release/berth" -H "unix://$socket" images berth-demo/busybox

# The image as berthd saves it (an OCI layout with docker's manifest.json)
# becomes the container's root filesystem.
bundle="$work/bundle"
rootfs="$bundle/rootfs"
mkdir -p "$work/saved" "$rootfs"
echo "+ docker save berth-demo/busybox | tar -x" >&2
"$docker" save berth-demo/busybox | tar -C "$work/saved" -x
for layer in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$work/saved/manifest.json"); do
    tar -C "$rootfs" -xf "$work/saved/$layer"
done

caps='"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
      "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"'
cat >"$bundle/config.json" <<JSON
{
  "ociVersion": "1.2.0",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": ["sh", "-c",
      "echo \"hello from a Berth container\"; echo \"hostname: \$(hostname)\"; id; grep Cap /proc/self/status; echo 'pids:'; ps -o pid,user,comm; echo 'mounts:'; cut -d' ' -f2,3 /proc/self/mounts"],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": { "bounding": [$caps], "effective": [$caps], "permitted": [$caps] },
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "berth-demo",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] }
  ],
  "linux": {
    "cgroupsPath": "/$id",
    "resources": { "memory": { "limit": 67108864 }, "pids": { "limit": 64 } },
    "namespaces": [ { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" } ],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON

echo "+ berth-runtime run --bundle $bundle $id" >&2
"$runtime" --root "$work/state" run --bundle "$bundle" "$id" </dev/null
