#!/usr/bin/env bash
# Container benchmarks: berthd and Debian's dockerd side by side in one run,
# each on private temporary directories and its own cgroup parent, driven by
# the same docker CLI, every container with --network none.
#
#   1. lifecycle: run --rm, create + start, exec, stop (CLI and API level)
#   2. logs of 1,000,000 lines
#   3. N sleeping containers (500): daemon RSS, shim PSS, ps, stats
#
# Prints absolute figures and berthd/dockerd ratios. Exits non-zero only when
# the benchmark cannot be set up or a command fails; a missed goal is
# reported, not failed. See bench/README.md.

set -euo pipefail

DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-$(command -v docker || echo /usr/local/bin/docker)}
CONTAINERS=${BENCH_CONTAINERS:-500}  # sleeping containers per daemon
PARALLEL=${BENCH_PARALLEL:-8}        # docker run -d / rm -f at a time
RUNS=${BENCH_RUNS:-20}               # hyperfine runs of the lifecycle and ps commands
WARMUP=${BENCH_WARMUP:-3}
API_ITERS=${BENCH_API_ITERS:-20}     # containers per API-level measurement
API_RUNS=${BENCH_API_RUNS:-5}        # hyperfine runs of each API-level measurement
LOG_LINES=${BENCH_LOG_LINES:-1000000}
LOGS_RUNS=${BENCH_LOGS_RUNS:-3}
STATS_RUNS=${BENCH_STATS_RUNS:-3}
SETTLE=${BENCH_SETTLE:-5}            # seconds of idle before memory is read
# The one request berthd answers with the stats of all containers.
STATS_PATH=${BENCH_STATS_PATH:-/containers/stats?stream=false}
# BENCH_LOGS=<dir>: keep both daemons' logs there (berthd then runs with -D)
# BENCH_BERTHD_ARGS: more berthd flags, split at spaces (e.g. another runtime:
# "--add-runtime runc=/usr/sbin/runc --default-runtime runc")
read -ra BERTHD_ARGS <<<"${BENCH_BERTHD_ARGS:-}"
IMAGE=bench/busybox:latest
API=/v1.41 # the newest API version both daemons speak

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"


[[ $(id -u) -eq 0 ]] || die "run as root: sudo ./bench/containers.sh"
for tool in hyperfine curl tar sha256sum awk xargs python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y $tool)"
done
[[ -x $DOCKERD ]] || die "$DOCKERD is missing (apt-get install -y docker.io)"
[[ -x $DOCKER ]] || die "the docker CLI is missing (set DOCKER=/path/to/docker)"
[[ -x /bin/busybox ]] && /bin/busybox --list >/dev/null 2>&1 ||
    die "/bin/busybox is missing (apt-get install -y busybox-static)"
for n in CONTAINERS PARALLEL RUNS API_ITERS API_RUNS LOG_LINES LOGS_RUNS STATS_RUNS; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done

# ---------------------------------------------------------------- berthd build

# berthd runs berth-shim and berth-runtime from its own directory.
if [[ -n ${BERTHD:-} ]]; then
    [[ -x $BERTHD ]] || die "BERTHD=$BERTHD is not an executable"
else
    BERTHD=$(release_binary berthd)
    release_build berthd berth-shim-bin berth-runtime-cli || [[ -x $BERTHD ]] ||
        die "cargo not found and $BERTHD not built"
    [[ -x $BERTHD ]] || die "$BERTHD was not built"
fi
for sibling in berth-shim berth-runtime; do
    [[ -x $(dirname "$BERTHD")/$sibling ]] ||
        die "$(dirname "$BERTHD")/$sibling is missing: berthd runs it from its own directory"
done

# ---------------------------------------------------------------- cleanup

BASE=$(mktemp -d /tmp/berth-bench.XXXXXX)
chmod 0711 "$BASE"
BERTHD_PID=
DOCKERD_PID=
# Each daemon's containers go under a cgroup parent of its own, so cleanup
# kills and removes exactly those cgroups.
B_CGROUP=berth-bench-$$
D_CGROUP=docker-bench-$$
OWN_CGROUPS= # set once it is known these cgroups did not exist before
# Host directories dockerd and containerd create whatever their flags say;
# those this run created are removed again when empty.
HOST_DIRS=(/run/containerd/s /run/containerd /run/docker/plugins /run/docker)
CREATED_HOST_DIRS=()
for d in "${HOST_DIRS[@]}"; do
    [[ -e $d ]] || CREATED_HOST_DIRS+=("$d")
done





# Every cgroup under this run's two parents, in every hierarchy (the v1
# controllers and the v2 unified mount), deepest first.
own_cgroups() {
    local mount parent
    [[ -n $OWN_CGROUPS && -n $B_CGROUP && -n $D_CGROUP ]] || return 0
    awk '{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "cgroup" || $(i + 1) == "cgroup2") print $5 }' \
        /proc/self/mountinfo | sort -u | while read -r mount; do
        for parent in "$B_CGROUP" "$D_CGROUP"; do
            [[ -d $mount/$parent ]] && find "$mount/$parent" -depth -type d
        done
    done
    return 0
}

kill_own_cgroups() {
    local cg pid
    for cg in $(own_cgroups); do
        # A frozen task does not die until thawed.
        [[ -f $cg/freezer.state ]] && echo THAWED >"$cg/freezer.state" 2>/dev/null
        [[ -f $cg/cgroup.freeze ]] && echo 0 >"$cg/cgroup.freeze" 2>/dev/null
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null
        done 2>/dev/null <"$cg/cgroup.procs"
    done
    return 0
}

remove_own_cgroups() {
    local i cg left
    for ((i = 0; i < 50; i++)); do
        kill_own_cgroups
        left=0
        for cg in $(own_cgroups); do
            rmdir "$cg" 2>/dev/null || left=1
        done
        ((left)) || return 0
        sleep 0.1
    done
    echo "bench: cannot remove these cgroups:" >&2
    own_cgroups >&2
}

# containerd's shims listen on /run/containerd/s/<sha256 of address/ns/id>,
# outside any directory of this run; a shim that is killed leaves it behind.
shim_sockets() { # pid...
    local pid
    for pid in "$@"; do
        tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | awk '
            prev == "-namespace" { ns = $0 } prev == "-id" { id = $0 }
            prev == "-address" { addr = $0 } { prev = $0 }
            END { if (ns != "" && id != "" && addr != "") printf "%s/%s/%s", addr, ns, id }
        ' | sha256sum | awk '{ print "/run/containerd/s/" $1 }'
    done
}

cleanup() {
    local status=$? pid containerd i sockets
    trap - EXIT INT TERM
    set +e
    say "cleaning up"
    # Containers first, so the daemons have nothing to stop.
    kill_own_cgroups
    [[ -n ${INSTANT_PID:-} ]] && stop_pid "$INSTANT_PID" 2
    containerd=$(cat "$BASE/dockerd/exec/containerd/containerd.pid" 2>/dev/null)
    stop_pid "$BERTHD_PID" 20
    stop_pid "$DOCKERD_PID" 20
    stop_pid "$containerd" 10
    mapfile -t sockets < <(shim_sockets $(pids_under_base))
    for pid in $(pids_under_base); do
        [[ $pid != "$$" ]] && stop_pid "$pid" 2
    done
    wait 2>/dev/null
    for i in "${sockets[@]}"; do [[ -S $i ]] && rm -f "$i"; done
    remove_own_cgroups
    if [[ -n ${BENCH_LOGS:-} ]]; then
        mkdir -p "$BENCH_LOGS" && cp "$BASE"/berthd/berthd.log "$BASE"/dockerd/dockerd.log "$BENCH_LOGS"/
    fi
    remove_base
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

OWN_CGROUPS=1
if [[ -n $(own_cgroups) ]]; then
    OWN_CGROUPS=
    die "cgroup $B_CGROUP or $D_CGROUP exists already"
fi

# ---------------------------------------------------------------- daemons

BSOCK=$BASE/berthd/berthd.sock
DSOCK=$BASE/dockerd/docker.sock


mkdir -p "$BASE/berthd" "$BASE/dockerd"
echo '{}' >"$BASE/berthd/daemon.json"
# Without deprecated-key-path dockerd writes its trust key to /etc/docker.
printf '{"deprecated-key-path": "%s"}\n' "$BASE/dockerd/key.json" >"$BASE/dockerd/daemon.json"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "starting berthd and dockerd under $BASE"
# berthd's default network is none.
"$BERTHD" ${BENCH_LOGS:+-D} --config-file "$BASE/berthd/daemon.json" \
    --data-root "$BASE/berthd/data" --exec-root "$BASE/berthd/exec" \
    --pidfile "$BASE/berthd/berthd.pid" -H "unix://$BSOCK" \
    --cgroup-parent "$B_CGROUP" ${BERTHD_ARGS[@]+"${BERTHD_ARGS[@]}"} \
    </dev/null >"$BASE/berthd/berthd.log" 2>&1 &
BERTHD_PID=$!
"$DOCKERD" --config-file "$BASE/dockerd/daemon.json" \
    --data-root "$BASE/dockerd/data" --exec-root "$BASE/dockerd/exec" \
    --pidfile "$BASE/dockerd/dockerd.pid" -H "unix://$DSOCK" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --userland-proxy=false --exec-opt native.cgroupdriver=cgroupfs \
    --cgroup-parent "$D_CGROUP" \
    </dev/null >"$BASE/dockerd/dockerd.log" 2>&1 &
DOCKERD_PID=$!
wait_ping berthd "$BSOCK" "$BERTHD_PID" "$BASE/berthd/berthd.log"
wait_ping dockerd "$DSOCK" "$DOCKERD_PID" "$BASE/dockerd/dockerd.log"

CONTAINERD_PID=$(containerd_pid)


pss_kb() { # pid... -> sum of Pss
    local pid
    for pid in "$@"; do cat "/proc/$pid/smaps_rollup" 2>/dev/null; done |
        awk '/^Pss:/ { sum += $2 } END { print sum + 0 }'
}

# ---------------------------------------------------------------- helpers

# hyperfine runs every command with `bash -c`; these functions and variables
# are exported to it. Commands name the daemon by its socket.
dk() { # socket docker-args...
    "$DOCKER" -H "unix://$1" "${@:2}"
}

# A curl config file: one operation per line of "METHOD PATH [BODY-FILE]" on
# stdin, all on one connection where the daemon keeps it open.
curl_config() { # socket
    local method path body first=1
    while read -r method path body; do
        ((first)) || echo next
        first=0
        printf 'url = "http://localhost%s%s"\nrequest = %s\nunix-socket = "%s"\n' "$API" "$path" "$method" "$1"
        printf 'fail\nsilent\nshow-error\nwrite-out = "%%{stderr}%%{http_code} %%{method} %%{url_effective}\\n"\n'
        if [[ -n $body ]]; then
            printf 'header = "Content-Type: application/json"\ndata-binary = "@%s"\n' "$body"
        else
            printf 'output = "/dev/null"\n'
        fi
    done
}
# Each request's status goes to $BASE/api/last.log, which a failure names.
api() { # config-file: runs it, stops at the first error
    curl --fail-early -K "$1" 2>"$BASE/api/last.log"
}
api_failed() { # what
    tail -n 3 "$BASE/api/last.log" >&2
    die "$1 failed (the last requests above)"
}

# Waits until container $2 has printed "ready" (its SIGTERM trap is set).
wait_ready() { # socket name
    local i
    for ((i = 0; i < 500; i++)); do
        curl -sSf --unix-socket "$1" "http://localhost$API/containers/$2/logs?stdout=1" 2>/dev/null |
            grep -qa ready && return 0
        sleep 0.01
    done
    echo "bench: container $2 did not print ready" >&2
    return 1
}

# Stop benchmark, prepare: a fresh container named $2 whose shell traps
# SIGTERM, started and ready.
prepare_stop_cli() { # socket name
    dk "$1" rm -f "$2" >/dev/null 2>&1 || true
    dk "$1" run -d --network none --name "$2" "$IMAGE" sh -c "$TRAP_SCRIPT" >/dev/null &&
        wait_ready "$1" "$2"
}
prepare_stop_api() { # socket: $API_ITERS fresh trap containers apistop1..N
    local i
    api "$BASE/api/$(basename "$1").stop-prepare.cfg" >/dev/null || return 1
    for ((i = 1; i <= API_ITERS; i++)); do wait_ready "$1" "apistop$i" || return 1; done
}

# exec create + start of `true` in container $2, $API_ITERS times: the
# creates on one connection, then the starts.
exec_api() { # socket container
    local i ids
    ids=$(for ((i = 0; i < API_ITERS; i++)); do echo "POST /containers/$2/exec $BASE/api/exec.json"; done |
        curl_config "$1" >"$BASE/api/exec-create.cfg" &&
        api "$BASE/api/exec-create.cfg" | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4) ||
        return 1
    [[ $(wc -w <<<"$ids") -eq $API_ITERS ]] || { echo "bench: exec create returned: $ids" >&2; return 1; }
    # Upgraded as the docker CLI does it (berthd requires it). curl calls an
    # upgraded reply with no output (true prints nothing) empty (exit 52),
    # so the status of each start is checked instead.
    for i in $ids; do echo "POST /exec/$i/start $BASE/api/exec-start.json"; done |
        curl_config "$1" | sed -e '/^fail$/d' \
            -e 's|^header = "Content-Type: application/json"$|&\nheader = "Connection: Upgrade"\nheader = "Upgrade: tcp"\nforbid-reuse|' \
            >"$BASE/api/exec-start.cfg" || return 1
    curl -K "$BASE/api/exec-start.cfg" >/dev/null 2>"$BASE/api/last.log"
    [[ $(grep -c '^101 POST' "$BASE/api/last.log") -eq $API_ITERS ]]
}

TRAP_SCRIPT='trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done'
export DOCKER IMAGE API BASE API_ITERS TRAP_SCRIPT
export -f dk curl_config api wait_ready prepare_stop_cli prepare_stop_api exec_api

now() { date +%s.%N; }
hf() { # hyperfine args... (output to stderr)
    hyperfine --style basic --shell bash "$@" >&2
}

# ---------------------------------------------------------------- facts

BERTH_DRIVER=$(dk "$BSOCK" info --format '{{.Driver}}' 2>/dev/null) || die "docker info on berthd failed"
DOCKER_DRIVER=$(dk "$DSOCK" info --format '{{.Driver}}' 2>/dev/null) || die "docker info on dockerd failed"
BERTH_VERSION=$(dk "$BSOCK" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
BERTH_RUNTIME=$(dk "$BSOCK" info --format '{{.DefaultRuntime}}' 2>/dev/null || echo '?')
DOCKER_VERSION=$(dk "$DSOCK" version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
CLIENT_VERSION=$(dk "$BSOCK" version --format '{{.Client.Version}}' 2>/dev/null || echo '?')
RUNC_VERSION=$(runc --version 2>/dev/null | awk 'NR == 1 { print $3 }')
CONTAINERD_VERSION=$(containerd --version 2>/dev/null | awk '{ print $3 }')

# ---------------------------------------------------------------- image

# busybox from Debian's busybox-static, one applet link per command, as a
# rootfs tar imported into both daemons.
say "importing a busybox image into both daemons"
ROOTFS=$BASE/rootfs
mkdir -p "$ROOTFS"/{bin,dev,etc,proc,root,sys,tmp}
chmod 1777 "$ROOTFS/tmp"
cp /bin/busybox "$ROOTFS/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$ROOTFS/bin/$applet"
done
tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -cf "$BASE/busybox.tar" .
rm -rf "$ROOTFS"
for sock in "$BSOCK" "$DSOCK"; do
    dk "$sock" import "$BASE/busybox.tar" "$IMAGE" >/dev/null || die "docker import into $sock failed"
    out=$(dk "$sock" run --rm --network none "$IMAGE" sh -c 'echo ok') ||
        die "docker run --rm --network none $IMAGE on $sock failed"
    [[ $out == ok ]] || die "docker run on $sock printed '$out', expected ok"
done

# Request bodies for the API-level measurements.
mkdir -p "$BASE/api"
printf '{"Image":"%s","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}' "$IMAGE" >"$BASE/api/true.json"
printf '{"Image":"%s","Cmd":["sh","-c","trap \\"exit 0\\" TERM; echo ready; while :; do sleep 0.1; done"],"HostConfig":{"NetworkMode":"none"}}' \
    "$IMAGE" >"$BASE/api/trap.json"
echo '{"Cmd":["true"],"AttachStdout":true,"AttachStderr":true}' >"$BASE/api/exec.json"
echo '{"Detach":false,"Tty":false}' >"$BASE/api/exec-start.json"
for sock in "$BSOCK" "$DSOCK"; do
    cfg=$BASE/api/$(basename "$sock")
    for ((i = 1; i <= API_ITERS; i++)); do
        echo "POST /containers/create?name=apirun$i $BASE/api/true.json"
        echo "POST /containers/apirun$i/start"
        echo "POST /containers/apirun$i/wait"
        echo "DELETE /containers/apirun$i"
    done | curl_config "$sock" >"$cfg.run.cfg"
    for ((i = 1; i <= API_ITERS; i++)); do
        echo "POST /containers/create?name=apics$i $BASE/api/true.json"
        echo "POST /containers/apics$i/start"
    done | curl_config "$sock" >"$cfg.cs.cfg"
    # Removal between runs; a missing container is no error here.
    for ((i = 1; i <= API_ITERS; i++)); do
        echo "DELETE /containers/apics$i?force=1"
    done | curl_config "$sock" | grep -vx fail >"$cfg.cs-clean.cfg"
    {
        for ((i = 1; i <= API_ITERS; i++)); do echo "DELETE /containers/apistop$i?force=1"; done
        for ((i = 1; i <= API_ITERS; i++)); do
            echo "POST /containers/create?name=apistop$i $BASE/api/trap.json"
            echo "POST /containers/apistop$i/start"
        done
    } | curl_config "$sock" | awk -v n="$API_ITERS" '
        # the DELETEs (the first n operations) may find nothing
        $0 == "next" { op++ } !(op < n && $0 == "fail") { print }' >"$cfg.stop-prepare.cfg"
    for ((i = 1; i <= API_ITERS; i++)); do
        echo "POST /containers/apistop$i/stop"
    done | curl_config "$sock" >"$cfg.stop.cfg"
done
BAPI=$BASE/api/$(basename "$BSOCK")
DAPI=$BASE/api/$(basename "$DSOCK")

# ---------------------------------------------------------------- 1. lifecycle

say "1. docker run --rm ($RUNS runs each)"
hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/run.csv" \
    -n berthd "dk $BSOCK run --rm --network none $IMAGE true" \
    -n dockerd "dk $DSOCK run --rm --network none $IMAGE true" ||
    die "docker run --rm failed"
say "1. API: create, start, wait, delete ($API_ITERS containers per run, $API_RUNS runs)"
hf --warmup 1 --runs "$API_RUNS" --export-csv "$BASE/run-api.csv" \
    -n berthd "api $BAPI.run.cfg" \
    -n dockerd "api $DAPI.run.cfg" ||
    api_failed "create/start/wait/delete through the API"

say "1. docker create + docker start ($RUNS runs each)"
hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/cs.csv" \
    --prepare "dk $BSOCK rm -f cs >/dev/null 2>&1 || true" \
    --prepare "dk $DSOCK rm -f cs >/dev/null 2>&1 || true" \
    -n berthd "dk $BSOCK create --name cs --network none $IMAGE true >/dev/null && dk $BSOCK start cs" \
    -n dockerd "dk $DSOCK create --name cs --network none $IMAGE true >/dev/null && dk $DSOCK start cs" ||
    die "docker create + start failed"
dk "$BSOCK" rm -f cs >/dev/null && dk "$DSOCK" rm -f cs >/dev/null || die "docker rm -f cs failed"
say "1. API: create, start ($API_ITERS containers per run, $API_RUNS runs)"
hf --warmup 1 --runs "$API_RUNS" --export-csv "$BASE/cs-api.csv" \
    --prepare "api $BAPI.cs-clean.cfg >/dev/null 2>&1" \
    --prepare "api $DAPI.cs-clean.cfg >/dev/null 2>&1" \
    -n berthd "api $BAPI.cs.cfg" \
    -n dockerd "api $DAPI.cs.cfg" ||
    api_failed "create/start through the API"
api "$BAPI.cs-clean.cfg" >/dev/null 2>&1; api "$DAPI.cs-clean.cfg" >/dev/null 2>&1

say "1. docker exec ($RUNS runs each)"
for sock in "$BSOCK" "$DSOCK"; do
    dk "$sock" run -d --name ex --network none "$IMAGE" sleep 100000 >/dev/null ||
        die "docker run -d on $sock failed"
done
hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/exec.csv" \
    -n berthd "dk $BSOCK exec ex true" \
    -n dockerd "dk $DSOCK exec ex true" ||
    die "docker exec failed"
say "1. API: exec create + start ($API_ITERS per run, $API_RUNS runs)"
hf --warmup 1 --runs "$API_RUNS" --export-csv "$BASE/exec-api.csv" \
    -n berthd "exec_api $BSOCK ex" \
    -n dockerd "exec_api $DSOCK ex" ||
    api_failed "exec through the API"
for sock in "$BSOCK" "$DSOCK"; do
    dk "$sock" rm -f ex >/dev/null || die "docker rm -f ex on $sock failed"
done

say "1. docker stop of a shell that traps SIGTERM ($RUNS runs each)"
hf --warmup 1 --runs "$RUNS" --export-csv "$BASE/stop.csv" \
    --prepare "prepare_stop_cli $BSOCK st" \
    --prepare "prepare_stop_cli $DSOCK st" \
    -n berthd "dk $BSOCK stop st" \
    -n dockerd "dk $DSOCK stop st" ||
    die "docker stop failed"
# Exit code 0: the trap ran (SIGKILL after the timeout would give 137).
for sock in "$BSOCK" "$DSOCK"; do
    code=$(dk "$sock" inspect --format '{{.State.ExitCode}}' st) || die "docker inspect st on $sock failed"
    [[ $code == 0 ]] || die "the stopped container on $sock exited with $code, not 0 from its trap"
    dk "$sock" rm -f st >/dev/null || die "docker rm -f st on $sock failed"
done
say "1. API: stop ($API_ITERS per run, $API_RUNS runs)"
hf --warmup 1 --runs "$API_RUNS" --export-csv "$BASE/stop-api.csv" \
    --prepare "prepare_stop_api $BSOCK" \
    --prepare "prepare_stop_api $DSOCK" \
    -n berthd "api $BAPI.stop.cfg" \
    -n dockerd "api $DAPI.stop.cfg" ||
    api_failed "stop through the API"
for sock in "$BSOCK" "$DSOCK"; do
    codes=$(for ((i = 1; i <= API_ITERS; i++)); do
        dk "$sock" inspect --format '{{.State.ExitCode}}' "apistop$i"
    done | sort | uniq -c | tr -s ' ')
    [[ $codes == " $API_ITERS 0" ]] || die "the stopped containers on $sock exited with (count code): $codes"
    dk "$sock" rm -f $(seq -f 'apistop%.0f' 1 "$API_ITERS") >/dev/null || die "docker rm -f on $sock failed"
done

# The docker CLI's own start-up and one request: a floor under every CLI
# time above, the same for both daemons.
say "1. docker CLI floor: docker version"
hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/floor.csv" \
    -n berthd "dk $BSOCK version --format '{{.Server.Version}}'" \
    -n dockerd "dk $DSOCK version --format '{{.Server.Version}}'" ||
    die "docker version failed"

# The docker CLI's own share of a `docker run --rm`: the same command against
# a server that answers every request at once (bench/instant_daemon.py).
say "1. docker CLI floor: docker run --rm against a daemon that does nothing"
python3 "$(dirname "$0")/instant_daemon.py" "$BASE/instant.sock" </dev/null >"$BASE/instant.log" 2>&1 &
INSTANT_PID=$!
for _ in $(seq 1 50); do [[ -S $BASE/instant.sock ]] && break; sleep 0.1; done
hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/floor-run.csv" \
    -n instant "dk $BASE/instant.sock run --rm busybox true" ||
    die "docker run against the instant daemon failed ($(cat "$BASE/instant.log"))"
stop_pid "$INSTANT_PID" 2
INSTANT_PID=

# ---------------------------------------------------------------- 2. logs

# Both with the same max-size, above what the output needs: berthd's default
# json-file cap (20 MB x 5) could rotate lines away.
say "2. logs of $LOG_LINES lines"
for side in B D; do
    if [[ $side == B ]]; then sock=$BSOCK; else sock=$DSOCK; fi
    start=$(now)
    dk "$sock" run -d --name logs --network none --log-opt max-size=200m "$IMAGE" seq "$LOG_LINES" >/dev/null ||
        die "docker run seq on $sock failed"
    code=$(dk "$sock" wait logs) || die "docker wait logs on $sock failed"
    end=$(now)
    [[ $code == 0 ]] || die "seq on $sock exited with $code"
    declare "LOGWRITE_$side=$(calc '%.2f' "$end - $start")"
    declare "LOGCOUNT_$side=$(dk "$sock" logs logs 2>/dev/null | wc -l)"
    declare "LOGLAST_$side=$(dk "$sock" logs --tail 1 logs 2>/dev/null)"
done
LOGDISK_B=$(find "$BASE/berthd/data" -name '*-json.log*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
LOGDISK_D=$(find "$BASE/dockerd/data" -name '*-json.log*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
hf --warmup 1 --runs "$LOGS_RUNS" --export-csv "$BASE/logs.csv" \
    -n berthd "dk $BSOCK logs logs >/dev/null" \
    -n dockerd "dk $DSOCK logs logs >/dev/null" ||
    die "docker logs failed"
hf --warmup 1 --runs "$LOGS_RUNS" --export-csv "$BASE/logs-api.csv" \
    -n berthd "curl -sSf -o /dev/null --unix-socket $BSOCK 'http://localhost$API/containers/logs/logs?stdout=1&stderr=1'" \
    -n dockerd "curl -sSf -o /dev/null --unix-socket $DSOCK 'http://localhost$API/containers/logs/logs?stdout=1&stderr=1'" ||
    die "GET /containers/logs/logs failed"
for sock in "$BSOCK" "$DSOCK"; do
    dk "$sock" rm -f logs >/dev/null || die "docker rm -f logs on $sock failed"
done

# ---------------------------------------------------------------- 3. many containers

# berth-shim, or containerd-shim-runc-v2 (comm is cut to 15 characters),
# naming this daemon's directory.
shim_pids() { # comm dir
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == "$1" ]] || continue
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$2/" && echo "${p#/proc/}"
    done
    return 0
}

http_code() { # socket path
    curl -s -o /dev/null -w '%{http_code}' --unix-socket "$1" "http://localhost$API$2"
}

# One daemon at a time, so the other's containers cost nothing meanwhile.
many() { # side(B|D) socket shim-comm dir daemon-pids...
    local side=$1 sock=$2 comm=$3 dir=$4 start end n shims first code pid
    local limit=$((CONTAINERS + 120)) # seconds for starting or removing them all
    shift 4
    say "3. $side: starting $CONTAINERS sleeping containers, $PARALLEL at a time"
    start=$(now)
    # A daemon that hangs fails the run instead of blocking it.
    seq 1 "$CONTAINERS" | timeout "$limit" xargs -P "$PARALLEL" -I{} "$DOCKER" -H "unix://$sock" \
        run -d --network none --name "many{}" "$IMAGE" sleep 100000 >/dev/null ||
        die "docker run -d of $CONTAINERS containers on $sock failed or took over $limit s"
    end=$(now)
    declare -g "MANYSTART_$side=$(calc '%.2f' "$end - $start")"
    n=$(dk "$sock" ps -q | wc -l)
    [[ $n -eq $CONTAINERS ]] || die "$sock lists $n running containers, expected $CONTAINERS"
    sleep "$SETTLE"
    declare -g "RSS_$side=$(rss_kb "$@")"
    declare -g "RSSPARTS_$side=$(for pid in "$@"; do rss_kb "$pid"; done |
        awk '{ printf "%s%.0f", (NR > 1 ? "+" : ""), $1 / 1024 }')"
    declare -g "DPSS_$side=$(pss_kb "$@")"
    mapfile -t shims < <(shim_pids "$comm" "$dir")
    ((${#shims[@]})) || die "no $comm process names $dir"
    declare -g "SHIMS_$side=${#shims[@]}"
    declare -g "SHIMPSS_$side=$(pss_kb "${shims[@]}")"
    declare -g "SHIMRSS_$side=$(rss_kb "${shims[@]}")"

    say "3. $side: docker ps with $CONTAINERS containers"
    hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/ps-$side.csv" \
        -n "$side" "dk $sock ps" || die "docker ps failed"
    hf --warmup "$WARMUP" --runs "$RUNS" --export-csv "$BASE/ps-api-$side.csv" \
        -n "$side" "curl -sSf -o /dev/null --unix-socket $sock 'http://localhost$API/containers/json?r=[1-$API_REQS]'" ||
        die "GET /containers/json failed"

    first=$(dk "$sock" ps -q | head -n 1)
    code=$(http_code "$sock" "/containers/$first/stats?stream=false")
    declare -g "STATSONE_$side=$code"
    if [[ $code == 200 ]]; then
        say "3. $side: docker stats --no-stream with $CONTAINERS containers"
        hf --runs "$STATS_RUNS" --export-csv "$BASE/stats-$side.csv" \
            -n "$side" "dk $sock stats --no-stream >/dev/null" || die "docker stats --no-stream failed"
    fi
    if [[ $side == B ]]; then
        code=$(http_code "$sock" "$STATS_PATH")
        STATSALL_B=$code
        if [[ $code == 200 ]]; then
            # One sample per container: each has one "preread".
            STATSALL_N=$(curl -sS --unix-socket "$sock" "http://localhost$API$STATS_PATH" |
                grep -o '"preread"' | wc -l)
            say "3. $side: GET $STATS_PATH"
            hf --warmup 1 --runs "$STATS_RUNS" --export-csv "$BASE/stats-all-$side.csv" \
                -n "$side" "curl -sSf -o /dev/null --unix-socket $sock 'http://localhost$API$STATS_PATH'" ||
                die "GET $STATS_PATH failed"
        fi
    fi

    say "3. $side: removing $CONTAINERS containers, $PARALLEL at a time"
    start=$(now)
    if ! dk "$sock" ps -aq | timeout "$limit" xargs -r -P "$PARALLEL" -n 16 "$DOCKER" -H "unix://$sock" rm -f >/dev/null; then
        # Reported, then the rest removed one by one: the figures so far stand.
        say "3. $side: docker rm -f failed or took over $limit s; removing what is left one by one"
        declare -g "RMFAILED_$side=1"
        dk "$sock" ps -aq | timeout "$limit" xargs -r -n 1 "$DOCKER" -H "unix://$sock" rm -f >/dev/null ||
            die "docker rm -f of the containers left on $sock failed again"
    fi
    end=$(now)
    declare -g "MANYRM_$side=$(calc '%.2f' "$end - $start")"
    n=$(dk "$sock" ps -aq | wc -l)
    [[ $n -eq 0 ]] || die "$sock still lists $n containers after rm -f"
    # A shim outliving its container would be a leak.
    sleep 1
    mapfile -t shims < <(shim_pids "$comm" "$dir")
    declare -g "SHIMSLEFT_$side=${#shims[@]}"
}
API_REQS=20
export API_REQS
LOAD_MID=$(cut -d' ' -f1-3 /proc/loadavg)

many B "$BSOCK" berth-shim "$BASE/berthd" "$BERTHD_PID"
many D "$DSOCK" containerd-shim "$BASE/dockerd" "$DOCKERD_PID" "$CONTAINERD_PID"

# ---------------------------------------------------------------- report

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

row() { printf '%-44s %-20s %-28s %-14s %-14s %s\n' "$@"; }

# time row: label csv-b row-b csv-d row-d divisor goal-text goal-ratio
time_row() {
    local label=$1 fb=$2 rb=$3 fd=$4 rd=$5 div=$6 goal=$7 min=$8 b bsd d dsd ok=-
    b=$(csv_field "$fb" "$rb" 2); bsd=$(csv_field "$fb" "$rb" 3)
    d=$(csv_field "$fd" "$rd" 2); dsd=$(csv_field "$fd" "$rd" 3)
    [[ $min != - ]] && ok=$(met "$d / $b >= $min")
    row "$label" "$(calc '%.1f ms (%.1f)' "$b * 1000 / $div, $bsd * 1000 / $div")" \
        "$(calc '%.1f ms (%.1f)' "$d * 1000 / $div, $dsd * 1000 / $div")" \
        "$(calc '%.2fx faster' "$d / $b")" "$goal" "$ok"
}

echo
echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(
    grep -qw cgroup2 /proc/mounts && grep -qw 'cgroup ' /proc/mounts && echo 'cgroup v1+v2 (hybrid)' ||
        { grep -qw cgroup2 /proc/mounts && echo 'cgroup v2' || echo 'cgroup v1'; })"
echo "Load average at the start: $LOAD_START; before the $CONTAINERS containers: $LOAD_MID; at the end: $LOAD_END"
echo "berthd $BERTH_VERSION ($BERTH_DRIVER), berth-shim, runtime $BERTH_RUNTIME${BENCH_BERTHD_ARGS:+ (flags: $BENCH_BERTHD_ARGS)}; dockerd $DOCKER_VERSION ($DOCKER_DRIVER), containerd $CONTAINERD_VERSION, containerd-shim-runc-v2, runc $RUNC_VERSION; docker CLI $CLIENT_VERSION"
echo "Image: busybox-static $(/bin/busybox | awk 'NR == 1 { print $2 }') imported; every container --network none; $CONTAINERS sleeping containers per daemon"
echo "Times are hyperfine means (sd in brackets); CLI: one docker command, $RUNS runs; API: curl over the unix socket,"
echo "$API_ITERS containers per run on one connection, $API_RUNS runs, divided by $API_ITERS. Ratios: dockerd/berthd for times"
echo "(above 1: berthd is faster), berthd/dockerd for memory (below 1: berthd is smaller). Goals apply to the CLI (end-to-end) lines."
echo
row "figure" "berthd" "dockerd (+containerd)" "ratio" "goal" "met"
row "------" "------" "---------------------" "-----" "----" "---"
time_row "docker run --rm busybox true" "$BASE/run.csv" 1 "$BASE/run.csv" 2 1 ">=10x faster" 10
time_row "  API create+start+wait+delete" "$BASE/run-api.csv" 1 "$BASE/run-api.csv" 2 "$API_ITERS" - -
time_row "docker create + docker start" "$BASE/cs.csv" 1 "$BASE/cs.csv" 2 1 - -
time_row "  API create+start" "$BASE/cs-api.csv" 1 "$BASE/cs-api.csv" 2 "$API_ITERS" - -
time_row "docker exec <c> true" "$BASE/exec.csv" 1 "$BASE/exec.csv" 2 1 - -
time_row "  API exec create+start" "$BASE/exec-api.csv" 1 "$BASE/exec-api.csv" 2 "$API_ITERS" - -
time_row "docker stop (sh trapping TERM)" "$BASE/stop.csv" 1 "$BASE/stop.csv" 2 1 - -
time_row "  API stop" "$BASE/stop-api.csv" 1 "$BASE/stop-api.csv" 2 "$API_ITERS" - -
time_row "docker version (CLI floor)" "$BASE/floor.csv" 1 "$BASE/floor.csv" 2 1 - -
time_row "docker logs, $LOG_LINES lines" "$BASE/logs.csv" 1 "$BASE/logs.csv" 2 1 - -
time_row "  API GET /containers/{id}/logs" "$BASE/logs-api.csv" 1 "$BASE/logs-api.csv" 2 1 - -
row "  lines returned (last line)" "$LOGCOUNT_B ($LOGLAST_B)" "$LOGCOUNT_D ($LOGLAST_D)" "-" "=$LOG_LINES" \
    "$([[ $LOGCOUNT_B == "$LOG_LINES" && $LOGCOUNT_D == "$LOG_LINES" ]] && echo yes || echo NO)"
row "  run -d seq .. wait (writing the log)" "$LOGWRITE_B s" "$LOGWRITE_D s" \
    "$(calc '%.2fx faster' "$LOGWRITE_D / $LOGWRITE_B")" - -
row "  json log on disk" "$(calc '%.1f MiB' "$LOGDISK_B / 1048576")" "$(calc '%.1f MiB' "$LOGDISK_D / 1048576")" \
    "$(calc '%.2fx' "$LOGDISK_B / $LOGDISK_D")" - -
row "start $CONTAINERS x run -d ($PARALLEL at a time)" "$MANYSTART_B s" "$MANYSTART_D s" \
    "$(calc '%.2fx faster' "$MANYSTART_D / $MANYSTART_B")" - -
row "daemon RSS with $CONTAINERS containers" "$(mib "$RSS_B")" \
    "$(mib "$RSS_D") ($RSSPARTS_D)" \
    "$(calc '1/%.1f' "$RSS_D / $RSS_B")" "<=1/5" "$(met "$RSS_B * 5 <= $RSS_D")"
row "shim PSS per container" "$(calc '%.0f KiB' "$SHIMPSS_B / $SHIMS_B")" "$(calc '%.0f KiB' "$SHIMPSS_D / $SHIMS_D")" \
    "$(calc '1/%.1f' "($SHIMPSS_D / $SHIMS_D) / ($SHIMPSS_B / $SHIMS_B)")" "<=1 MiB" "$(met "$SHIMPSS_B / $SHIMS_B <= 1024")"
row "  shims found (RSS per shim)" "$SHIMS_B ($(calc '%.0f KiB' "$SHIMRSS_B / $SHIMS_B"))" \
    "$SHIMS_D ($(calc '%.0f KiB' "$SHIMRSS_D / $SHIMS_D"))" - "=$CONTAINERS" \
    "$([[ $SHIMS_B == "$CONTAINERS" && $SHIMS_D == "$CONTAINERS" ]] && echo yes || echo NO)"
row "daemon + shims, PSS" "$(mib "$((DPSS_B + SHIMPSS_B))")" "$(mib "$((DPSS_D + SHIMPSS_D))")" \
    "$(calc '1/%.1f' "($DPSS_D + $SHIMPSS_D) / ($DPSS_B + $SHIMPSS_B)")" - -
time_row "docker ps, $CONTAINERS rows" "$BASE/ps-B.csv" 1 "$BASE/ps-D.csv" 1 1 - -
time_row "  API GET /containers/json" "$BASE/ps-api-B.csv" 1 "$BASE/ps-api-D.csv" 1 "$API_REQS" - -
stats_cell() { # side
    local code=STATSONE_$1
    if [[ ${!code} == 200 ]]; then
        calc '%.2f s (%.2f)' "$(csv_field "$BASE/stats-$1.csv" 1 2), $(csv_field "$BASE/stats-$1.csv" 1 3)"
    else
        echo "n/a (HTTP ${!code})"
    fi
}
row "docker stats --no-stream, $CONTAINERS" "$(stats_cell B)" "$(stats_cell D)" \
    "$([[ $STATSONE_B == 200 && $STATSONE_D == 200 ]] &&
        calc '%.2fx faster' "$(csv_field "$BASE/stats-D.csv" 1 2) / $(csv_field "$BASE/stats-B.csv" 1 2)" || echo -)" - -
if [[ $STATSALL_B == 200 ]]; then
    cell=$(calc '%.1f ms (%.1f)' "$(csv_field "$BASE/stats-all-B.csv" 1 2) * 1000, $(csv_field "$BASE/stats-all-B.csv" 1 3) * 1000")
    ratio=$([[ $STATSONE_D == 200 ]] &&
        calc '%.2fx faster' "$(csv_field "$BASE/stats-D.csv" 1 2) / $(csv_field "$BASE/stats-all-B.csv" 1 2)" || echo -)
else
    cell="n/a (HTTP $STATSALL_B)" ratio=-
fi
if [[ $STATSALL_B == 200 ]]; then
    row "  one request: GET ${STATS_PATH%%\?*}" "$cell" "(no such call)" "$ratio" "=$CONTAINERS samples" \
        "$([[ $STATSALL_N == "$CONTAINERS" ]] && echo yes || echo "NO ($STATSALL_N)")"
else
    row "  one request: GET ${STATS_PATH%%\?*}" "$cell" "(no such call)" "$ratio" - -
fi
row "rm -f $CONTAINERS containers ($PARALLEL at a time)" "$MANYRM_B s${RMFAILED_B:+ (a rm failed)}" \
    "$MANYRM_D s${RMFAILED_D:+ (a rm failed)}" \
    "$(calc '%.2fx faster' "$MANYRM_D / $MANYRM_B")" - -
row "  shims left after rm -f" "$SHIMSLEFT_B" "$SHIMSLEFT_D" - "=0" \
    "$([[ $SHIMSLEFT_B == 0 && $SHIMSLEFT_D == 0 ]] && echo yes || echo NO)"

FLOOR_B=$(csv_field "$BASE/floor.csv" 1 2)
FLOOR_RUN=$(csv_field "$BASE/floor-run.csv" 1 2)
RUN_B=$(csv_field "$BASE/run.csv" 1 2)
RUN_D=$(csv_field "$BASE/run.csv" 2 2)
echo
echo "The docker CLI floor bounds the end-to-end ratios: start-up plus one request takes $(calc '%.1f ms' "$FLOOR_B * 1000") (docker version"
echo "on berthd), and 'docker run --rm busybox true' against a daemon that answers everything at once takes $(calc '%.1f ms' "$FLOOR_RUN * 1000")."
echo "So a daemon that took no time at all could make 'docker run --rm' at most $(calc '%.1fx' "$RUN_D / $FLOOR_RUN") faster than dockerd's $(calc '%.1f ms' "$RUN_D * 1000");"
echo "berthd's own share of its $(calc '%.1f ms' "$RUN_B * 1000") is $(calc '%.1f ms' "($RUN_B - $FLOOR_RUN) * 1000"), dockerd's $(calc '%.1f ms' "($RUN_D - $FLOOR_RUN) * 1000") ($(calc '%.1fx' "($RUN_D - $FLOOR_RUN) / ($RUN_B - $FLOOR_RUN)") less)."
