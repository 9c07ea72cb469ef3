#!/usr/bin/env bash
# Container start-to-exit time of berth-runtime against runc, side by side in
# one run: `run` of the same busybox bundle executing `true`, measured with
# hyperfine. Prints both timings and the ratio. Run as root from the repo root.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "bench/runtime.sh: run as root" >&2; exit 1; }
for tool in hyperfine runc /bin/busybox python3; do
    command -v "$tool" >/dev/null || { echo "bench/runtime.sh: $tool is missing (apt-get install -y hyperfine runc busybox-static)" >&2; exit 1; }
done
unset CARGO_TARGET_DIR
cargo build --release --bin berth-runtime >/dev/null
berth="$PWD/target/release/berth-runtime"

work="$(mktemp -d /tmp/berth-bench-runtime.XXXXXX)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in true sh; do ln -sf busybox "$rootfs/bin/$applet"; done
(cd "$work/bundle" && runc spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["process"].pop("rlimits", None)
c["linux"]["cgroupsPath"] = "/berth-bench-runtime"
json.dump(c, open(path, "w"))
PY

runs=${RUNS:-50}
echo "machine: $(nproc) cores, kernel $(uname -r); runc $(runc --version | head -1 | cut -d' ' -f3)"
hyperfine --warmup 5 --runs "$runs" --export-json "$work/result.json" \
    -n runc "runc --root $work/runc-state run --bundle $work/bundle bench-runc" \
    -n berth-runtime "$berth --root $work/berth-state run --bundle $work/bundle bench-berth" >&2
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
runc, berth = r["runc"]["mean"], r["berth-runtime"]["mean"]
print(f"run of `true`: runc {runc*1000:.1f} ms, berth-runtime {berth*1000:.1f} ms, "
      f"berth-runtime is {runc/berth:.2f}x as fast as runc")
PY
