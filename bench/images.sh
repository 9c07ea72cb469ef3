#!/usr/bin/env bash
# Image benchmarks: berthd and Debian's dockerd side by side in one run, each
# on private temporary directories, driven by the same docker CLI.
#
#   1. docker load of a ~500 MB multi-layer docker-archive (made here)
#   2. docker images with 1,000 tags of one image, then with 1,000 distinct images
#   3. idle RSS: berthd vs dockerd + its containerd
#
# Prints absolute figures and berthd/dockerd ratios. Exits non-zero only when
# the benchmark cannot be set up or run; a missed goal is reported, not failed.
# See bench/README.md.

set -euo pipefail

DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-$(command -v docker || echo /usr/local/bin/docker)}
LAYERS=${BENCH_LAYERS:-10}           # layers in the load archive
LAYER_MB=${BENCH_LAYER_MB:-50}       # MB per layer (random + compressible + small files)
TAGS=${BENCH_TAGS:-1000}             # tags for the images benchmark
LOAD_RUNS=${BENCH_LOAD_RUNS:-3}
IMAGES_RUNS=${BENCH_IMAGES_RUNS:-20}
SETTLE=${BENCH_SETTLE:-5}            # seconds a daemon idles before RSS is read
# BENCH_LOGS=<dir>: keep both daemons' logs there (berthd runs with -D)
IMAGE=bench/load:latest

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"


[[ $(id -u) -eq 0 ]] || die "run as root: sudo ./bench/images.sh"
for tool in hyperfine curl tar sha256sum awk; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
[[ -x $DOCKERD ]] || die "$DOCKERD is missing (apt-get install -y docker.io)"
[[ -x $DOCKER ]] || die "the docker CLI is missing (set DOCKER=/path/to/docker)"

# ---------------------------------------------------------------- berthd build

if [[ -n ${BERTHD:-} ]]; then
    [[ -x $BERTHD ]] || die "BERTHD=$BERTHD is not an executable"
else
    BERTHD=$(release_binary berthd)
    release_build berthd || [[ -x $BERTHD ]] || die "cargo not found and $BERTHD not built"
    [[ -x $BERTHD ]] || die "$BERTHD was not built"
fi

# ---------------------------------------------------------------- cleanup

BASE=$(mktemp -d /tmp/berth-bench.XXXXXX)
chmod 0711 "$BASE"
BERTHD_PID=
DOCKERD_PID=
# Host directories dockerd and containerd create whatever their flags say;
# those this run created are removed again when empty.
HOST_DIRS=(/run/containerd/s /run/containerd /run/docker/plugins /run/docker)
CREATED_HOST_DIRS=()
for d in "${HOST_DIRS[@]}"; do
    [[ -e $d ]] || CREATED_HOST_DIRS+=("$d")
done





cleanup() {
    local status=$? pid containerd i
    trap - EXIT INT TERM
    set +e
    containerd=$(cat "$BASE/dockerd/exec/containerd/containerd.pid" 2>/dev/null)
    stop_pid "$BERTHD_PID" 20
    stop_pid "$DOCKERD_PID" 20
    stop_pid "$containerd" 10
    for pid in $(pids_under_base); do
        [[ $pid != "$$" ]] && stop_pid "$pid" 2
    done
    wait 2>/dev/null
    if [[ -n ${BENCH_LOGS:-} ]]; then
        mkdir -p "$BENCH_LOGS" && cp "$BASE"/berthd/berthd.log "$BASE"/dockerd/dockerd.log "$BENCH_LOGS"/
    fi
    remove_base
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- daemons

BSOCK=$BASE/berthd/berthd.sock
DSOCK=$BASE/dockerd/docker.sock
BDOCKER=("$DOCKER" -H "unix://$BSOCK")
DDOCKER=("$DOCKER" -H "unix://$DSOCK")


mkdir -p "$BASE/berthd" "$BASE/dockerd"
echo '{}' >"$BASE/berthd/daemon.json"
# Without deprecated-key-path dockerd writes its trust key to /etc/docker.
printf '{"deprecated-key-path": "%s"}\n' "$BASE/dockerd/key.json" >"$BASE/dockerd/daemon.json"

say "starting berthd and dockerd under $BASE"
"$BERTHD" -D --config-file "$BASE/berthd/daemon.json" \
    --data-root "$BASE/berthd/data" --exec-root "$BASE/berthd/exec" \
    --pidfile "$BASE/berthd/berthd.pid" -H "unix://$BSOCK" \
    </dev/null >"$BASE/berthd/berthd.log" 2>&1 &
BERTHD_PID=$!
"$DOCKERD" --config-file "$BASE/dockerd/daemon.json" \
    --data-root "$BASE/dockerd/data" --exec-root "$BASE/dockerd/exec" \
    --pidfile "$BASE/dockerd/dockerd.pid" -H "unix://$DSOCK" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    </dev/null >"$BASE/dockerd/dockerd.log" 2>&1 &
DOCKERD_PID=$!
wait_ping berthd "$BSOCK" "$BERTHD_PID" "$BASE/berthd/berthd.log"
wait_ping dockerd "$DSOCK" "$DOCKERD_PID" "$BASE/dockerd/dockerd.log"

CONTAINERD_PID=$(containerd_pid)


# ---------------------------------------------------------------- facts

BERTH_DRIVER=$("${BDOCKER[@]}" info --format '{{.Driver}}' 2>/dev/null) || die "docker info on berthd failed"
DOCKER_DRIVER=$("${DDOCKER[@]}" info --format '{{.Driver}}' 2>/dev/null) || die "docker info on dockerd failed"
BERTH_VERSION=$("${BDOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
DOCKER_VERSION=$("${DDOCKER[@]}" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')

sleep "$SETTLE"
RSS_START_B=$(rss_kb "$BERTHD_PID")
RSS_START_DD=$(rss_kb "$DOCKERD_PID")
RSS_START_CD=$(rss_kb "$CONTAINERD_PID")

# ---------------------------------------------------------------- archive

case $(uname -m) in
    x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; armv7l) ARCH=arm ;;
    *) ARCH=$(uname -m) ;;
esac

# A docker-archive as `docker save` writes it: uncompressed layer tars, a
# config naming their diff_ids, manifest.json. Each layer holds random data
# (incompressible, unique per layer), a compressible text file and a
# directory of small files.
make_archive() {
    local out=$1 work=$BASE/archive i dir hex diff_ids=() layer_paths=() history=()
    local rand_mb=$((LAYER_MB / 2)) text_mb=$((LAYER_MB * 2 / 5)) small_mb
    small_mb=$((LAYER_MB - rand_mb - text_mb))
    mkdir -p "$work/tree" "$work/out"
    for ((i = 1; i <= LAYERS; i++)); do
        dir=$work/tree/$i/opt/bench/layer$i
        mkdir -p "$dir/small"
        head -c "${rand_mb}M" /dev/urandom >"$dir/random.bin"
        seq -f "layer $i line %.0f of compressible text for the image benchmark" 1 10000000 |
            head -c "${text_mb}M" >"$dir/text.txt"
        head -c "${small_mb}M" /dev/urandom | (cd "$dir/small" && split -b 8k -a 4 - f)
        tar -C "$work/tree/$i" --numeric-owner --owner=0 --group=0 --sort=name \
            --mtime=@1700000000 -cf "$work/out/layer.tar" opt
        rm -rf "${work:?}/tree/$i"
        hex=$(sha256sum "$work/out/layer.tar" | cut -d' ' -f1)
        mkdir -p "$work/out/$hex"
        mv "$work/out/layer.tar" "$work/out/$hex/layer.tar"
        diff_ids+=("\"sha256:$hex\"")
        layer_paths+=("\"$hex/layer.tar\"")
        history+=("{\"created\":\"2023-11-14T22:13:20Z\",\"created_by\":\"bench layer $i\"}")
    done
    local IFS=,
    printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
        "$ARCH" "${diff_ids[*]}" "${history[*]}" >"$work/out/config.json"
    hex=$(sha256sum "$work/out/config.json" | cut -d' ' -f1)
    mv "$work/out/config.json" "$work/out/$hex.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' \
        "$hex" "$IMAGE" "${layer_paths[*]}" >"$work/out/manifest.json"
    unset IFS
    (cd "$work/out" && tar --numeric-owner --owner=0 --group=0 -cf "$out" manifest.json "$hex.json" \
        $(printf '%s\n' "${layer_paths[@]}" | tr -d '"' | cut -d/ -f1))
    rm -rf "$work"
    IMAGE_ID=sha256:$hex
}

ARCHIVE=$BASE/load.tar
say "making a $((LAYERS * LAYER_MB)) MB archive of $LAYERS layers"
make_archive "$ARCHIVE" || die "cannot make the archive"
ARCHIVE_MB=$(( $(stat -c %s "$ARCHIVE") / 1048576 ))

# ---------------------------------------------------------------- 1. load


q() { printf '%q ' "$@"; }

say "1. docker load ($LOAD_RUNS runs each; the image is removed before each run)"
hyperfine --style basic --runs "$LOAD_RUNS" --export-csv "$BASE/load.csv" \
    --prepare "$(q "${BDOCKER[@]}") rmi -f $IMAGE >/dev/null 2>&1; sync" \
    --prepare "$(q "${DDOCKER[@]}") rmi -f $IMAGE >/dev/null 2>&1; sync" \
    -n berthd "$(q "${BDOCKER[@]}") load -i $ARCHIVE" \
    -n dockerd "$(q "${DDOCKER[@]}") load -i $ARCHIVE" >&2 ||
    die "docker load failed"

for side in B D; do
    if [[ $side == B ]]; then cli=("${BDOCKER[@]}"); else cli=("${DDOCKER[@]}"); fi
    got=$("${cli[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) ||
        die "$IMAGE is not listed after docker load"
    [[ $got == "$IMAGE_ID" ]] || die "$IMAGE has ID $got, expected $IMAGE_ID"
done

# CPU time the daemon spends on one load (user + system, all threads; for
# dockerd also its containerd): less sensitive to other load on the host
# than wall time.
cpu_ticks() { # pid... -> clock ticks
    local pid sum=0
    for pid in "$@"; do
        sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$sum"
}
cpu_of_load() { # pid... (the daemon's docker CLI is in $cli)
    local before
    "${cli[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true
    sync
    before=$(cpu_ticks "$@")
    "${cli[@]}" load -i "$ARCHIVE" >/dev/null || die "docker load failed"
    calc '%.2f' "($(cpu_ticks "$@") - $before) / $(getconf CLK_TCK)"
}
cli=("${BDOCKER[@]}"); LOAD_CPU_B=$(cpu_of_load "$BERTHD_PID")
cli=("${DDOCKER[@]}"); LOAD_CPU_D=$(cpu_of_load "$DOCKERD_PID" "$CONTAINERD_PID")
sync
DISK_B=$(du -sxk "$BASE/berthd/data" | cut -f1)
DISK_D=$(du -sxk "$BASE/dockerd/data" | cut -f1)

sleep "$SETTLE"
RSS_LOAD_B=$(rss_kb "$BERTHD_PID")
RSS_LOAD_DD=$(rss_kb "$DOCKERD_PID")
RSS_LOAD_CD=$(rss_kb "$CONTAINERD_PID")

# ---------------------------------------------------------------- 2. images

tag_many() { # socket -> seconds taken; fails unless every answer is 201
    local start end codes
    start=$(date +%s.%N)
    # One curl, one connection: curl expands t[1-N] into N requests.
    codes=$(curl -sS --unix-socket "$1" -X POST -w '%{http_code}\n' -o /dev/null \
        "http://localhost/images/$IMAGE_ID/tag?repo=bench/tag&tag=t[1-$TAGS]" |
        sort | uniq -c | tr -s ' ')
    end=$(date +%s.%N)
    [[ $codes == " $TAGS 201" ]] || die "tagging via $1 answered: $codes"
    echo "$end - $start" | bc -l
}

say "2. tagging the image $TAGS times on each daemon"
TAG_B=$(tag_many "$BSOCK")
TAG_D=$(tag_many "$DSOCK")
for cli in BDOCKER DDOCKER; do
    declare -n c=$cli
    n=$("${c[@]}" images --quiet --no-trunc | wc -l)
    [[ $n -eq $((TAGS + 1)) ]] || die "${c[*]} images lists $n images, expected $((TAGS + 1))"
    unset -n c
done

say "2. docker images with $((TAGS + 1)) tags"
hyperfine --style basic --warmup 3 --runs "$IMAGES_RUNS" --export-csv "$BASE/images.csv" \
    -n berthd "$(q "${BDOCKER[@]}") images" \
    -n dockerd "$(q "${DDOCKER[@]}") images" >&2 ||
    die "docker images failed"

# The same listing without the CLI: the daemon's share of the time above.
# API_REQS requests on one connection (curl expands the [1-N] range), so
# curl's own start-up is spread over them; the report divides by API_REQS.
API_REQS=100
hyperfine --style basic --warmup 3 --runs "$IMAGES_RUNS" --export-csv "$BASE/images-api.csv" \
    -n berthd "curl -sSf -o /dev/null --unix-socket $BSOCK 'http://localhost/images/json?r=[1-$API_REQS]'" \
    -n dockerd "curl -sSf -o /dev/null --unix-socket $DSOCK 'http://localhost/images/json?r=[1-$API_REQS]'" >&2 ||
    die "GET /images/json failed"

sleep "$SETTLE"
RSS_TAGS_B=$(rss_kb "$BERTHD_PID")
RSS_TAGS_DD=$(rss_kb "$DOCKERD_PID")
RSS_TAGS_CD=$(rss_kb "$CONTAINERD_PID")

# ---------------------------------------------------------------- 2b. distinct images

# The same listing with $TAGS distinct images (one tag each) instead of one
# image with $TAGS tags: the daemon then does its per-image work (config,
# layers, sizes) $TAGS times. They share one small layer and differ by a label.
make_many_archive() {
    local out=$1 work=$BASE/many i hex layer cfg entries=()
    mkdir -p "$work/tree/etc" "$work/out"
    echo "bench" >"$work/tree/etc/bench"
    tar -C "$work/tree" --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -cf "$work/out/layer.tar" etc
    layer=$(sha256sum "$work/out/layer.tar" | cut -d' ' -f1)
    mkdir "$work/out/$layer" && mv "$work/out/layer.tar" "$work/out/$layer/layer.tar"
    for ((i = 1; i <= TAGS; i++)); do
        cfg=$(printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Cmd":["/bin/sh"],"Labels":{"bench.n":"%d"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$ARCH" "$i" "$layer")
        hex=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
        printf '%s' "$cfg" >"$work/out/$hex.json"
        entries+=("{\"Config\":\"$hex.json\",\"RepoTags\":[\"bench/many:n$i\"],\"Layers\":[\"$layer/layer.tar\"]}")
    done
    (IFS=,; printf '[%s]\n' "${entries[*]}") >"$work/out/manifest.json"
    (cd "$work/out" && tar --numeric-owner --owner=0 --group=0 -cf "$out" .)
    rm -rf "$work"
}

say "2b. docker images with $TAGS distinct images"
for cli in BDOCKER DDOCKER; do
    declare -n c=$cli
    "${c[@]}" rmi -f "$IMAGE_ID" >/dev/null || die "${c[*]} rmi -f $IMAGE_ID failed"
    unset -n c
done
make_many_archive "$BASE/many.tar" || die "cannot make the archive of $TAGS images"
for cli in BDOCKER DDOCKER; do
    declare -n c=$cli
    "${c[@]}" load -q -i "$BASE/many.tar" >/dev/null || die "${c[*]} load of $TAGS images failed"
    n=$("${c[@]}" images --quiet --no-trunc | sort -u | wc -l)
    [[ $n -eq $TAGS ]] || die "${c[*]} images lists $n distinct images, expected $TAGS"
    unset -n c
done
hyperfine --style basic --warmup 3 --runs "$IMAGES_RUNS" --export-csv "$BASE/many.csv" \
    -n berthd "$(q "${BDOCKER[@]}") images" \
    -n dockerd "$(q "${DDOCKER[@]}") images" >&2 ||
    die "docker images failed"
hyperfine --style basic --warmup 3 --runs "$IMAGES_RUNS" --export-csv "$BASE/many-api.csv" \
    -n berthd "curl -sSf -o /dev/null --unix-socket $BSOCK 'http://localhost/images/json?r=[1-$API_REQS]'" \
    -n dockerd "curl -sSf -o /dev/null --unix-socket $DSOCK 'http://localhost/images/json?r=[1-$API_REQS]'" >&2 ||
    die "GET /images/json failed"

# ---------------------------------------------------------------- report

LOAD_B=$(csv_field "$BASE/load.csv" 1 2); LOAD_B_SD=$(csv_field "$BASE/load.csv" 1 3)
LOAD_D=$(csv_field "$BASE/load.csv" 2 2); LOAD_D_SD=$(csv_field "$BASE/load.csv" 2 3)
IMG_B=$(csv_field "$BASE/images.csv" 1 2); IMG_B_SD=$(csv_field "$BASE/images.csv" 1 3)
IMG_D=$(csv_field "$BASE/images.csv" 2 2); IMG_D_SD=$(csv_field "$BASE/images.csv" 2 3)
API_B=$(csv_field "$BASE/images-api.csv" 1 2); API_B_SD=$(csv_field "$BASE/images-api.csv" 1 3)
API_D=$(csv_field "$BASE/images-api.csv" 2 2); API_D_SD=$(csv_field "$BASE/images-api.csv" 2 3)
MANY_B=$(csv_field "$BASE/many.csv" 1 2); MANY_B_SD=$(csv_field "$BASE/many.csv" 1 3)
MANY_D=$(csv_field "$BASE/many.csv" 2 2); MANY_D_SD=$(csv_field "$BASE/many.csv" 2 3)
MAPI_B=$(csv_field "$BASE/many-api.csv" 1 2); MAPI_B_SD=$(csv_field "$BASE/many-api.csv" 1 3)
MAPI_D=$(csv_field "$BASE/many-api.csv" 2 2); MAPI_D_SD=$(csv_field "$BASE/many-api.csv" 2 3)


row() { printf '%-32s %-18s %-26s %-13s %-15s %s\n' "$@"; }

echo
echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
echo "Temp filesystem: $(df -T "$BASE" | awk 'NR == 2 { print $2 " on " $1 }'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "berthd $BERTH_VERSION, storage driver $BERTH_DRIVER"
echo "dockerd $DOCKER_VERSION, storage driver $DOCKER_DRIVER; docker CLI $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null)"
echo "Archive: $ARCHIVE_MB MiB, $LAYERS uncompressed layers; $TAGS tags; RSS read after $SETTLE s idle"
echo "Times are hyperfine means (sd in brackets). Ratios: dockerd/berthd for times and CPU (above 1: berthd is better),"
echo "berthd/dockerd for data-root size, berthd/(dockerd+containerd) for RSS (below 1: berthd is smaller)."
echo
row "figure" "berthd" "dockerd (+containerd)" "ratio" "goal" "met"
row "------" "------" "---------------------" "-----" "----" "---"
row "docker load" "$(calc '%.2f s (%.2f)' "$LOAD_B, $LOAD_B_SD")" \
    "$(calc '%.2f s (%.2f)' "$LOAD_D, $LOAD_D_SD")" \
    "$(calc '%.2fx faster' "$LOAD_D / $LOAD_B")" ">=1.5x faster" "$(met "$LOAD_D / $LOAD_B >= 1.5")"
row "  daemon CPU per load" "$LOAD_CPU_B s" "$LOAD_CPU_D s" \
    "$(calc '%.2fx' "$LOAD_CPU_D / $LOAD_CPU_B")" "-" "-"
row "  data-root after load" "$(mib "$DISK_B")" "$(mib "$DISK_D")" \
    "$(calc '%.2fx' "$DISK_B / $DISK_D")" "-" "-"
row "docker images, $((TAGS + 1)) rows" "$(calc '%.1f ms (%.1f)' "$IMG_B * 1000, $IMG_B_SD * 1000")" \
    "$(calc '%.1f ms (%.1f)' "$IMG_D * 1000, $IMG_D_SD * 1000")" \
    "$(calc '%.2fx faster' "$IMG_D / $IMG_B")" ">=3x faster" "$(met "$IMG_D / $IMG_B >= 3")"
row "  GET /images/json, per request" "$(calc '%.2f ms (%.2f)' "$API_B * 1000 / $API_REQS, $API_B_SD * 1000 / $API_REQS")" \
    "$(calc '%.2f ms (%.2f)' "$API_D * 1000 / $API_REQS, $API_D_SD * 1000 / $API_REQS")" \
    "$(calc '%.2fx faster' "$API_D / $API_B")" "-" "-"
row "docker images, $TAGS images" "$(calc '%.1f ms (%.1f)' "$MANY_B * 1000, $MANY_B_SD * 1000")" \
    "$(calc '%.1f ms (%.1f)' "$MANY_D * 1000, $MANY_D_SD * 1000")" \
    "$(calc '%.2fx faster' "$MANY_D / $MANY_B")" "(>=3x faster)" "$(met "$MANY_D / $MANY_B >= 3")"
row "  GET /images/json, per request" "$(calc '%.2f ms (%.2f)' "$MAPI_B * 1000 / $API_REQS, $MAPI_B_SD * 1000 / $API_REQS")" \
    "$(calc '%.2f ms (%.2f)' "$MAPI_D * 1000 / $API_REQS, $MAPI_D_SD * 1000 / $API_REQS")" \
    "$(calc '%.2fx faster' "$MAPI_D / $MAPI_B")" "-" "-"
row "tag x$TAGS (API, one conn.)" "$(calc '%.2f s' "$TAG_B")" "$(calc '%.2f s' "$TAG_D")" \
    "$(calc '%.2fx faster' "$TAG_D / $TAG_B")" "-" "-"
for phase in START LOAD TAGS; do
    case $phase in
        START) label="idle RSS after startup" ;;
        LOAD) label="idle RSS after load" ;;
        TAGS) label="idle RSS after tags+images" ;;
    esac
    b=RSS_${phase}_B dd=RSS_${phase}_DD cd=RSS_${phase}_CD
    total=$((${!dd} + ${!cd}))
    row "$label" "$(mib "${!b}")" "$(mib "$total") ($(calc '%.0f+%.0f' "${!dd} / 1024, ${!cd} / 1024"))" \
        "$(calc '1/%.1f' "$total / ${!b}")" "<=1/5" "$(met "${!b} * 5 <= $total")"
done
