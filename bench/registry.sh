#!/usr/bin/env bash
# Registry benchmarks, all in one run on loopback, each side on private
# temporary directories:
#
#   1. pull of a ~500 MB image of 10 layers (random, incompressible) from
#      Debian's docker-registry: berthd vs dockerd (+ containerd) vs skopeo
#      (copy to a local OCI layout)
#   2. push of the same image to an empty docker-registry: berthd vs dockerd
#   3. the disk's write speed for the same bytes (dd conv=fsync), against
#      which berthd's pull is measured (goal: within 1.2x), and the time the
#      two digests a pull checks take alone (its CPU floor)
#   4. the registry side: `berth registry serve` vs docker-registry serving
#      the same pulls to the same clients (skopeo, berthd)
#
# Prints absolute figures and ratios. Exits non-zero only when the benchmark
# cannot be set up or run; a missed goal is reported, not failed.
# See bench/README.md.

set -euo pipefail

DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-$(command -v docker || echo /usr/local/bin/docker)}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
SKOPEO=${SKOPEO:-/usr/bin/skopeo}
LAYERS=${BENCH_LAYERS:-10}      # layers in the image
LAYER_MB=${BENCH_LAYER_MB:-50}  # MB of random data per layer
RUNS=${BENCH_RUNS:-3}           # hyperfine runs per command
IMAGE_PATH=bench/pull

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

[[ $(id -u) -eq 0 ]] || die "run as root: sudo ./bench/registry.sh"
for tool in hyperfine curl tar sha256sum awk python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
[[ -x $DOCKERD ]] || die "$DOCKERD is missing (apt-get install -y docker.io)"
[[ -x $DOCKER ]] || die "the docker CLI is missing (set DOCKER=/path/to/docker)"
[[ -x $REGISTRY_BIN ]] || die "$REGISTRY_BIN is missing (apt-get install -y docker-registry)"
[[ -x $SKOPEO ]] || die "$SKOPEO is missing (apt-get install -y skopeo)"

# ---------------------------------------------------------------- berth build

# BERTHD and BERTH (the `berth` CLI, for `berth registry serve`) may be
# given; otherwise both are built in release mode.
if [[ -n ${BERTHD:-} || -n ${BERTH:-} ]]; then
    [[ -x ${BERTHD:-} ]] || die "BERTHD=${BERTHD:-} is not an executable (give BERTHD and BERTH together)"
    [[ -x ${BERTH:-} ]] || die "BERTH=${BERTH:-} is not an executable (give BERTHD and BERTH together)"
else
    BERTHD=$(release_binary berthd)
    BERTH=$(release_binary berth)
    release_build berthd berth-cli berth-runtime-cli berth-shim-bin ||
        [[ -x $BERTHD && -x $BERTH ]] || die "cargo not found and berthd/berth not built"
    [[ -x $BERTHD && -x $BERTH ]] || die "berthd or berth was not built"
fi

# ---------------------------------------------------------------- cleanup

BASE=$(mktemp -d /tmp/berth-bench-registry.XXXXXX)
chmod 0711 "$BASE"
PIDS=()
HOST_DIRS=(/run/containerd/s /run/containerd /run/docker/plugins /run/docker)
CREATED_HOST_DIRS=()
for d in "${HOST_DIRS[@]}"; do
    [[ -e $d ]] || CREATED_HOST_DIRS+=("$d")
done


cleanup() {
    local status=$? pid containerd
    trap - EXIT INT TERM
    set +e
    containerd=$(cat "$BASE/dockerd/exec/containerd/containerd.pid" 2>/dev/null)
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 20; done
    stop_pid "$containerd" 10
    for pid in $(pids_under_base); do
        [[ $pid != "$$" ]] && stop_pid "$pid" 2
    done
    wait 2>/dev/null
    remove_base
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- processes

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # name url pid log
    local i
    for ((i = 0; i < 600; i++)); do
        curl -s -o /dev/null "$2" 2>/dev/null && return 0
        alive "$3" || { tail -n 30 "$4" >&2; die "$1 exited during startup (log above)"; }
        sleep 0.1
    done
    tail -n 30 "$4" >&2
    die "$1 did not answer within 60 s (log above)"
}

start_distribution() { # name -> host:port
    local name=$1 port dir=$BASE/$1
    port=$(free_port)
    mkdir -p "$dir/root"
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' \
        "$dir/root" "$port" >"$dir/config.yml"
    "$REGISTRY_BIN" serve "$dir/config.yml" </dev/null >"$dir/log" 2>&1 &
    PIDS+=($!)
    wait_http "$name" "http://127.0.0.1:$port/v2/" "$!" "$dir/log"
    echo "127.0.0.1:$port"
}

say "starting two docker-registry instances, berth registry serve, berthd and dockerd under $BASE"
DIST=$(start_distribution dist)         # what everyone pulls from
PUSHREG=$(start_distribution pushreg)   # emptied before each push
BREG_PORT=$(free_port)
mkdir -p "$BASE/berthreg"
"$BERTH" registry serve --addr "127.0.0.1:$BREG_PORT" --root "$BASE/berthreg/root" \
    </dev/null >"$BASE/berthreg/log" 2>&1 &
PIDS+=($!)
BREG=127.0.0.1:$BREG_PORT
wait_http "berth registry serve" "http://$BREG/v2/" "$!" "$BASE/berthreg/log"

BSOCK=$BASE/berthd/berthd.sock
DSOCK=$BASE/dockerd/docker.sock
BDOCKER=("$DOCKER" -H "unix://$BSOCK")
DDOCKER=("$DOCKER" -H "unix://$DSOCK")
mkdir -p "$BASE/berthd" "$BASE/dockerd"
echo '{}' >"$BASE/berthd/daemon.json"
printf '{"deprecated-key-path": "%s"}\n' "$BASE/dockerd/key.json" >"$BASE/dockerd/daemon.json"
"$BERTHD" --config-file "$BASE/berthd/daemon.json" \
    --data-root "$BASE/berthd/data" --exec-root "$BASE/berthd/exec" \
    --pidfile "$BASE/berthd/berthd.pid" -H "unix://$BSOCK" \
    </dev/null >"$BASE/berthd/berthd.log" 2>&1 &
BERTHD_PID=$!
PIDS+=("$BERTHD_PID")
"$DOCKERD" --config-file "$BASE/dockerd/daemon.json" \
    --data-root "$BASE/dockerd/data" --exec-root "$BASE/dockerd/exec" \
    --pidfile "$BASE/dockerd/dockerd.pid" -H "unix://$DSOCK" \
    --insecure-registry "$DIST" --insecure-registry "$PUSHREG" --insecure-registry "$BREG" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    </dev/null >"$BASE/dockerd/dockerd.log" 2>&1 &
DOCKERD_PID=$!
PIDS+=("$DOCKERD_PID")
wait_ping berthd "$BSOCK" "$BERTHD_PID" "$BASE/berthd/berthd.log"
wait_ping dockerd "$DSOCK" "$DOCKERD_PID" "$BASE/dockerd/dockerd.log"

# ---------------------------------------------------------------- the image

case $(uname -m) in
    x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; armv7l) ARCH=arm ;;
    *) ARCH=$(uname -m) ;;
esac

# A docker-archive of $LAYERS layers of random data, loaded into dockerd and
# pushed from there (gzip layers, as any registry holds them).
make_archive() {
    local out=$1 work=$BASE/archive i hex diff_ids=() layer_paths=()
    mkdir -p "$work/tree" "$work/out"
    for ((i = 1; i <= LAYERS; i++)); do
        mkdir -p "$work/tree/$i/data"
        head -c "${LAYER_MB}M" /dev/urandom >"$work/tree/$i/data/layer$i.bin"
        tar -C "$work/tree/$i" --numeric-owner --owner=0 --group=0 --mtime=@1700000000 \
            -cf "$work/out/layer.tar" data
        rm -rf "${work:?}/tree/$i"
        hex=$(sha256sum "$work/out/layer.tar" | cut -d' ' -f1)
        mkdir -p "$work/out/$hex"
        mv "$work/out/layer.tar" "$work/out/$hex/layer.tar"
        diff_ids+=("\"sha256:$hex\"")
        layer_paths+=("\"$hex/layer.tar\"")
    done
    local IFS=,
    printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$ARCH" "${diff_ids[*]}" >"$work/out/config.json"
    hex=$(sha256sum "$work/out/config.json" | cut -d' ' -f1)
    mv "$work/out/config.json" "$work/out/$hex.json"
    printf '[{"Config":"%s.json","RepoTags":["bench/source:latest"],"Layers":[%s]}]\n' \
        "$hex" "${layer_paths[*]}" >"$work/out/manifest.json"
    unset IFS
    (cd "$work/out" && tar --numeric-owner --owner=0 --group=0 -cf "$out" .)
    rm -rf "$work"
    IMAGE_ID=sha256:$hex
}

say "making an image of $LAYERS layers of $LAYER_MB MB of random data"
make_archive "$BASE/image.tar" || die "cannot make the image"
"${DDOCKER[@]}" load -i "$BASE/image.tar" >/dev/null || die "dockerd cannot load the image"
rm -f "$BASE/image.tar"
for reg in "$DIST" "$BREG"; do
    "${DDOCKER[@]}" tag bench/source:latest "$reg/$IMAGE_PATH:latest"
    "${DDOCKER[@]}" push "$reg/$IMAGE_PATH:latest" >/dev/null || die "dockerd cannot push to $reg"
done
"${DDOCKER[@]}" rmi "$DIST/$IMAGE_PATH:latest" "$BREG/$IMAGE_PATH:latest" >/dev/null
PULLED_MB=$(curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$DIST/v2/$IMAGE_PATH/manifests/latest" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(round(sum(l["size"] for l in m["layers"]) / 1048576))')
UNPACKED_MB=$((LAYERS * LAYER_MB))

# ---------------------------------------------------------------- helpers

q() { printf '%q ' "$@"; }
# hyperfine's CSV: command,mean,stddev,median,user,system,min,max (seconds)
mean() { awk -F, -v r="$2" 'NR == r + 1 { print $2 }' "$1"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

SRC=$DIST/$IMAGE_PATH:latest
BREG_SRC=$BREG/$IMAGE_PATH:latest
# Forget the image and flush, so every run downloads and unpacks everything.
FORGET_B="$(q "${BDOCKER[@]}") rmi -f $SRC $BREG_SRC >/dev/null 2>&1; $(q "${BDOCKER[@]}") image prune -af >/dev/null 2>&1; sync"
FORGET_D="$(q "${DDOCKER[@]}") rmi -f $SRC $BREG_SRC bench/source:latest >/dev/null 2>&1; sync"
FORGET_S="rm -rf $BASE/skopeo; sync"

# ---------------------------------------------------------------- 1. pull

say "1. pull of $SRC ($PULLED_MB MB compressed, $UNPACKED_MB MB unpacked), $RUNS runs each"
hyperfine --style basic --runs "$RUNS" --export-csv "$BASE/pull.csv" \
    --prepare "$FORGET_B" --prepare "$FORGET_D" --prepare "$FORGET_S" \
    -n berthd "$(q "${BDOCKER[@]}") pull -q $SRC" \
    -n dockerd "$(q "${DDOCKER[@]}") pull -q $SRC" \
    -n skopeo "$(q "$SKOPEO") copy -q --src-tls-verify=false docker://$SRC oci:$BASE/skopeo:latest" >&2 ||
    die "a pull failed"
for side in BDOCKER DDOCKER; do
    declare -n c=$side
    got=$("${c[@]}" image inspect --format '{{.Id}}' "$SRC" 2>/dev/null) || die "$SRC missing after the pull"
    [[ $got == "$IMAGE_ID" ]] || die "$SRC has ID $got, expected $IMAGE_ID"
    unset -n c
done
PULL_B=$(mean "$BASE/pull.csv" 1)
PULL_D=$(mean "$BASE/pull.csv" 2)
PULL_S=$(mean "$BASE/pull.csv" 3)

# ---------------------------------------------------------------- 2. push

PUSH_DST=$PUSHREG/bench/push:latest
"${BDOCKER[@]}" tag "$SRC" "$PUSH_DST"
"${DDOCKER[@]}" tag "$SRC" "$PUSH_DST"
EMPTY_PUSHREG="rm -rf $BASE/pushreg/root/docker; sync"
say "2. push to an empty registry, $RUNS runs each"
hyperfine --style basic --runs "$RUNS" --export-csv "$BASE/push.csv" \
    --prepare "$EMPTY_PUSHREG" \
    -n berthd "$(q "${BDOCKER[@]}") push -q $PUSH_DST" \
    -n dockerd "$(q "${DDOCKER[@]}") push -q $PUSH_DST" >&2 ||
    die "a push failed"
PUSH_B=$(mean "$BASE/push.csv" 1)
PUSH_D=$(mean "$BASE/push.csv" 2)

# ---------------------------------------------------------------- 3. disk

# A pull writes the compressed blobs and the unpacked layers: the second dd
# writes that many bytes, the first only the unpacked size (the goal's line).
WRITTEN_MB=$((PULLED_MB + UNPACKED_MB))
say "3. disk write speed: dd of $UNPACKED_MB MB and of $WRITTEN_MB MB with conv=fsync next to the data-roots"
hyperfine --style basic --runs "$RUNS" --export-csv "$BASE/dd.csv" \
    --prepare "rm -f $BASE/dd.out; sync" \
    -n dd "dd if=/dev/zero of=$BASE/dd.out bs=1M count=$UNPACKED_MB conv=fsync status=none" \
    -n "dd written" "dd if=/dev/zero of=$BASE/dd.out bs=1M count=$WRITTEN_MB conv=fsync status=none" >&2 ||
    die "dd failed"
rm -f "$BASE/dd.out"
DD=$(mean "$BASE/dd.csv" 1)
DD_WRITTEN=$(mean "$BASE/dd.csv" 2)

# The least work a pull that checks what it got must do: the SHA-256 of every
# compressed blob (its digest) and of every unpacked layer (its diff_id), the
# two on their own cores, from memory, with nothing received, decompressed or
# written. Set against the disk's speed, it says whether the disk or the CPU
# bounds a verified pull on this machine.
say "3. the digests alone: sha256 of the $PULLED_MB MB of blobs and of the $UNPACKED_MB MB unpacked, in parallel"
command -v openssl >/dev/null || die "openssl is missing (apt-get install -y openssl)"
BLOBS=("$BASE"/skopeo/blobs/sha256/*)
for blob in "${BLOBS[@]}"; do
    gzip -dc "$blob" 2>/dev/null || true
done >"$BASE/unpacked.bin"
cat "${BLOBS[@]}" "$BASE/unpacked.bin" >/dev/null
hyperfine --style basic --runs "$RUNS" --warmup 1 --export-csv "$BASE/digests.csv" \
    -n digests "openssl dgst -sha256 $(q "${BLOBS[@]}") >/dev/null & openssl dgst -sha256 $(q "$BASE/unpacked.bin") >/dev/null; wait" >&2 ||
    die "openssl dgst failed"
rm -f "$BASE/unpacked.bin"
DIGESTS=$(mean "$BASE/digests.csv" 1)

# ---------------------------------------------------------------- 4. servers

say "4. the same pulls served by docker-registry and by berth registry serve, $RUNS runs each"
hyperfine --style basic --runs "$RUNS" --export-csv "$BASE/serve.csv" \
    --prepare "$FORGET_S" --prepare "$FORGET_S" --prepare "$FORGET_B" --prepare "$FORGET_B" \
    -n "skopeo from docker-registry" "$(q "$SKOPEO") copy -q --src-tls-verify=false docker://$SRC oci:$BASE/skopeo:latest" \
    -n "skopeo from berth registry" "$(q "$SKOPEO") copy -q --src-tls-verify=false docker://$BREG_SRC oci:$BASE/skopeo:latest" \
    -n "berthd from docker-registry" "$(q "${BDOCKER[@]}") pull -q $SRC" \
    -n "berthd from berth registry" "$(q "${BDOCKER[@]}") pull -q $BREG_SRC" >&2 ||
    die "a pull failed"
SERVE_SD=$(mean "$BASE/serve.csv" 1)
SERVE_SB=$(mean "$BASE/serve.csv" 2)
SERVE_BD=$(mean "$BASE/serve.csv" 3)
SERVE_BB=$(mean "$BASE/serve.csv" 4)

# ---------------------------------------------------------------- report

goal() { # ok-condition (awk expression)
    if [[ $(calc '%d' "$1") -eq 1 ]]; then echo yes; else echo NO; fi
}
row() { printf '%-40s %-12s %-12s %-12s %s\n' "$@"; }
BERTH_VERSION=$("${BDOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
DOCKER_VERSION=$("${DDOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
echo
echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(df -T "$BASE" | awk 'NR == 2 { print $2 }') under $BASE"
echo "berthd $BERTH_VERSION, dockerd $DOCKER_VERSION, $("$SKOPEO" --version), docker-registry $("$REGISTRY_BIN" --version 2>/dev/null | awk '{ print $3 }')"
echo "Image: $LAYERS layers, $PULLED_MB MB compressed, $UNPACKED_MB MB unpacked; $RUNS runs each; means"
echo
row "" "berthd" "dockerd" "skopeo" "ratio (goal)"
row "pull (s)" "$(calc '%.2f' "$PULL_B")" "$(calc '%.2f' "$PULL_D")" "$(calc '%.2f' "$PULL_S")" \
    "dockerd/berthd $(calc '%.2f' "$PULL_D / $PULL_B"), skopeo/berthd $(calc '%.2f' "$PULL_S / $PULL_B")"
row "push (s)" "$(calc '%.2f' "$PUSH_B")" "$(calc '%.2f' "$PUSH_D")" "" \
    "dockerd/berthd $(calc '%.2f' "$PUSH_D / $PUSH_B")"
row "dd conv=fsync of $UNPACKED_MB MB (s)" "$(calc '%.2f' "$DD")" "" "" \
    "$(calc '%.0f' "$UNPACKED_MB / $DD") MB/s"
row "berthd pull / disk write" "$(calc '%.2f' "$PULL_B / $DD")" "" "" \
    "(<= 1.2: $(goal "$PULL_B / $DD <= 1.2"))"
row "dd conv=fsync of $WRITTEN_MB MB (s)" "$(calc '%.2f' "$DD_WRITTEN")" "" "" \
    "blobs + layers, what a pull writes"
row "berthd pull / that write" "$(calc '%.2f' "$PULL_B / $DD_WRITTEN")" "" "" ""
row "sha256 of blobs + unpacked (s)" "$(calc '%.2f' "$DIGESTS")" "" "" \
    "$(calc '%.2f' "$DIGESTS / $DD")x the dd: the floor of a verified pull"
echo
row "served by" "docker-reg." "berth reg." "" "docker-registry/berth"
row "skopeo copy (s)" "$(calc '%.2f' "$SERVE_SD")" "$(calc '%.2f' "$SERVE_SB")" "" "$(calc '%.2f' "$SERVE_SD / $SERVE_SB")"
row "berthd pull (s)" "$(calc '%.2f' "$SERVE_BD")" "$(calc '%.2f' "$SERVE_BB")" "" "$(calc '%.2f' "$SERVE_BD / $SERVE_BB")"
