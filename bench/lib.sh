# Shared by the bench/*.sh scripts (sourced, not run): messages, the release
# build of Berth's binaries, process and mount helpers that only ever touch
# what lives under the run's own $BASE directory, and figure formatting.
# The sourcing script sets REPO first; BASE, DOCKERD_PID are its own.

say() { printf '== %s\n' "$*" >&2; }
die() {
    printf 'bench: %s\n' "$*" >&2
    exit 1
}

find_cargo() {
    local home
    command -v cargo && return
    for home in "${SUDO_USER:+$(getent passwd "$SUDO_USER" | cut -d: -f6)}" "$HOME" /root; do
        [[ -n $home && -x $home/.cargo/bin/cargo ]] && { echo "$home/.cargo/bin/cargo"; return; }
    done
    return 1
}

# release_build package...: `cargo build --release` of the packages, as the
# invoking user under sudo so ./target stays theirs. Returns 1 without cargo.
release_build() {
    local cargo build package
    cargo=$(find_cargo) || return 1
    say "building $* (release)"
    build=("$cargo" build --release --quiet --manifest-path "$REPO/Cargo.toml")
    for package in "$@"; do build+=(-p "$package"); done
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        sudo -u "$SUDO_USER" -H env "PATH=$(dirname "$cargo"):$PATH" \
            ${CARGO_TARGET_DIR:+"CARGO_TARGET_DIR=$CARGO_TARGET_DIR"} "${build[@]}" ||
            die "cargo build failed"
    else
        "${build[@]}" || die "cargo build failed"
    fi
}

# The release binary `name` of this checkout.
release_binary() { echo "${CARGO_TARGET_DIR:-$REPO/target}/release/$1"; }

alive() { [[ -n $1 && -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*[ZX]' "/proc/$1/status" 2>/dev/null; }

stop_pid() { # pid grace-seconds
    local pid=$1 grace=$2 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
}

# PIDs of processes whose command line names a path under $BASE (containerd,
# shims): started by this run's daemons and by nothing else.
pids_under_base() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$BASE/" && echo "${p#/proc/}"
    done
    return 0
}

mounts_under_base() {
    # mountinfo field 5 is the mount point, octal-escaped; deepest first.
    awk -v base="$BASE" '
        { mp = $5; gsub(/\\040/, " ", mp); if (index(mp, base) == 1) print mp }
    ' /proc/self/mountinfo | awk '{ print gsub("/", "/") " " $0 }' | sort -rn | cut -d' ' -f2-
}

# Unmounts what is left under $BASE (deepest first, a few rounds), removes
# $BASE unless something stays mounted, then the host directories this run
# created (the script's CREATED_HOST_DIRS) when they are empty.
remove_base() {
    local i m mounts d
    for i in 1 2 3 4 5; do
        mapfile -t mounts < <(mounts_under_base)
        ((${#mounts[@]})) || break
        for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
    done
    if [[ -n $(mounts_under_base) ]]; then
        echo "bench: leaving $BASE in place, still mounted:" >&2
        mounts_under_base >&2
    else
        rm -rf "$BASE"
    fi
    for d in "${CREATED_HOST_DIRS[@]}"; do rmdir "$d" 2>/dev/null; done
    return 0
}

wait_ping() { # name socket pid log
    local i
    for ((i = 0; i < 600; i++)); do
        curl -sf --unix-socket "$2" http://localhost/_ping >/dev/null 2>&1 && return 0
        alive "$3" || { tail -n 30 "$4" >&2; die "$1 exited during startup (log above)"; }
        sleep 0.1
    done
    tail -n 30 "$4" >&2
    die "$1 did not answer /_ping within 60 s (log above)"
}

containerd_pid() {
    local pid
    pid=$(cat "$BASE/dockerd/exec/containerd/containerd.pid" 2>/dev/null) || true
    if [[ -z $pid ]]; then # older layouts: dockerd's direct child named containerd
        pid=$(ps -o pid=,comm= --ppid "$DOCKERD_PID" | awk '$2 == "containerd" { print $1; exit }')
    fi
    alive "$pid" || die "cannot find the containerd started by dockerd"
    echo "$pid"
}

rss_kb() { # pid...
    local pid sum=0 kb
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status") || die "process $pid is gone"
        sum=$((sum + kb))
    done
    echo "$sum"
}

csv_field() { # file row(1-based) column(1-based)
    awk -F, -v r="$2" -v c="$3" 'NR == r + 1 { print $c }' "$1"
}

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
met() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo NO; fi; }
mib() { calc '%.1f MiB' "$1 / 1024"; }
