#!/usr/bin/env bash
# The one test command: installs the system packages the tests need, builds
# the whole workspace and runs every test. Run it as root on Debian 12: the
# tests create namespaces, cgroups and mounts, and start their own dockerd,
# podman and runc containers (all on private directories, removed afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

# Reference runtimes and engines the tests compare with or drive, the static
# busybox the fixtures are made from, and what the build links against.
PACKAGES=(
    runc
    busybox-static
    docker.io
    containerd
    tini
    podman
    fuse-overlayfs
    slirp4netns
    uidmap
    libseccomp-dev
    pkg-config
    gcc
    libc6-dev
    iproute2
    skopeo
    umoci
    docker-registry
    hyperfine
    ca-certificates
    openssl
    curl
    procps
    python3-docker
    python3-venv
    python3-pip
)

# A whole run (build and tests) stays well under an hour; a hung test fails it.
TEST_TIME_LIMIT=45m

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: run as root (the tests create namespaces, cgroups and mounts)" >&2
    exit 1
fi

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    local policy_text
    for pkg in "${missing[@]}"; do
        # Read it whole first: grep -q stopping early would fail the pipe.
        policy_text="$(apt-cache policy "$pkg")"
        if ! grep -q 'Candidate: [^(]' <<<"$policy_text"; then
            echo "scripts/test.sh: apt has no package '$pkg' (is this Debian 12?)" >&2
            exit 1
        fi
    done
    # Package scripts must not start the system's dockerd or containerd: the
    # tests start their own daemons on private directories.
    local policy=/usr/sbin/policy-rc.d created_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=yes
    fi
    local status=0
    apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
    [ "$created_policy" = yes ] && rm -f "$policy"
    return "$status"
}

ensure_rust() {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
        return 0
    fi
    # Debian 12's rustc is older than the workspace's rust-version.
    echo "scripts/test.sh: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --default-toolchain stable
    export PATH="$HOME/.cargo/bin:$PATH"
}

# oras (the Python SDK, from PyPI) is a registry client of the registry
# server tests; it lives in a venv under ./target, away from the system's
# Python packages.
ORAS_VERSION=0.2.43
install_oras() {
    local venv=target/oras-venv
    if "$venv/bin/python3" -c "import oras.client" >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p target
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "oras==$ORAS_VERSION"
}

install_packages
ensure_rust
install_oras

# Tests find berth-runtime next to themselves in ./target.
unset CARGO_TARGET_DIR
# A one-off build gains nothing from incremental state; it only takes disk.
export CARGO_INCREMENTAL=0

echo "scripts/test.sh: free disk before the build:"
df -h . | tail -n 1

cargo build --workspace --all-targets
timeout --kill-after=60 "$TEST_TIME_LIMIT" \
    cargo test --workspace --no-fail-fast -- --test-threads=2
