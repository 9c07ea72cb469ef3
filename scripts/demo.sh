#!/usr/bin/env bash
# The main job: builds Berth, starts berthd with its defaults (SQLite
# metadata and content store under /var/lib/berth, API on /run/berth.sock),
# imports a busybox image made from Debian's static busybox, shows it with the
# docker CLI, and runs containers from it through berthd: one that prints
# what it sees, and one in the background with ps, logs and exec. Run it as
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
cargo build --release --bin berth-runtime --bin berth-shim --bin berthd --bin berth
berthd="$PWD/target/release/berthd"
socket=/run/berth.sock
export DOCKER_HOST="unix://$socket"

work="$(mktemp -d /tmp/berth-demo.XXXXXX)"
berthd_pid=""
cleanup() {
    "$docker" rm -f berth-demo berth-demo-ticker >/dev/null 2>&1 || true
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

echo "+ docker run --rm berth-demo/busybox sh -c '…what the container sees…'" >&2
"$docker" run --rm --name berth-demo --hostname berth-demo berth-demo/busybox sh -c \
    'echo "hello from a Berth container"; echo "hostname: $(hostname)"; id; grep Cap /proc/self/status; echo "pids:"; ps -o pid,user,comm; echo "mounts:"; cut -d" " -f2,3 /proc/self/mounts'
echo "+ docker run -d berth-demo/busybox sh -c 'while :; do date; sleep 1; done'" >&2
cid=$("$docker" run -d --name berth-demo-ticker berth-demo/busybox sh -c 'while :; do date; sleep 1; done')
sleep 2
echo "+ docker ps" >&2
"$docker" ps
echo "+ docker logs berth-demo-ticker" >&2
"$docker" logs berth-demo-ticker
echo "+ docker exec berth-demo-ticker ps" >&2
"$docker" exec berth-demo-ticker ps
echo "+ docker rm -f berth-demo-ticker" >&2
"$docker" rm -f "$cid" >/dev/null
