#!/usr/bin/env bash
# Check loadgen's permessage-deflate against a server that is not ringcast: Python `websockets`
# with compression (scripts/deflate_peer.py, in a venv). One short run of `--deflate --payload
# json` must negotiate on every connection, lose nothing, inflate every message (no protocol
# error, no foreign frame: the stamps were read after inflating) and compress more than 1.5x;
# a run against the same server declining the extension must go on plain (ratio under 1).
#
#   scripts/check-loadgen-deflate.sh
#
# Installs `websockets` into DEFLATE_CHECK_VENV (default target/deflate-check-venv). Exit 0 when
# both runs hold, 1 when one does not, 2 when the check could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stop-process.sh

die() { echo "check-loadgen-deflate: $*" >&2; exit 2; }

venv=${DEFLATE_CHECK_VENV:-target/deflate-check-venv}
if ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
  python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
  "$venv/bin/pip" install -q websockets || die "pip install websockets failed"
fi
cargo build --locked -q -p loadgen --bin loadgen || die "cargo build failed"
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
scratch=$(mktemp -d)
peer_pid=""
trap 'stop_process "$peer_pid" 5; rm -rf "$scratch"' EXIT

# RUN_NAME PEER_OPTION... : starts the peer, runs loadgen against it, stops the peer.
run() {
  local name=$1
  shift
  "$venv/bin/python" scripts/deflate_peer.py "$@" >"$scratch/$name.peer" 2>&1 &
  peer_pid=$!
  for _ in $(seq 100); do
    grep -q '^port ' "$scratch/$name.peer" && break
    kill -0 "$peer_pid" 2>/dev/null || die "deflate_peer.py exited: $(cat "$scratch/$name.peer")"
    sleep 0.1
  done
  local port
  port=$(awk '/^port /{print $2}' "$scratch/$name.peer")
  [ -n "$port" ] || die "deflate_peer.py did not listen"
  # A debug build and a Python server: send lag is not what this checks (--max-send-lag 1s).
  "$target_dir/debug/loadgen" run --url "ws://127.0.0.1:$port/chat" --subscribers 50 \
    --publishers 2 --rate 20 --size 1KiB --payload json --deflate --duration 3s --warmup 1s \
    --drain 1s --quiet --max-send-lag 1s --out "$scratch/$name" >"$scratch/$name.out" ||
    { cat "$scratch/$name.out" >&2; die "loadgen run ($name) exited $?"; }
  stop_process "$peer_pid" 5
  peer_pid=""
  cat "$scratch/$name.out"
}

run deflate
run declined --no-deflate
python3 - "$scratch/deflate/report.json" "$scratch/declined/report.json" <<'PY'
import json, sys

def load(path):
    with open(path) as f:
        return json.load(f)["results"]

failed = []
def check(name, ok, what):
    if not ok:
        failed.append(f"{name}: {what}")

for name, path, negotiated in (("deflate", sys.argv[1], True), ("declined", sys.argv[2], False)):
    r = load(path)
    wire = r["wire"]
    check(name, r["connections"]["ok"] == 52, f"connections ok {r['connections']['ok']} of 52")
    check(name, r["delivered"] > 0 and r["lost"] == 0, f"delivered {r['delivered']} lost {r['lost']}")
    check(name, r["protocol_errors"] == 0 and r["foreign"] == 0,
          f"protocol errors {r['protocol_errors']}, foreign {r['foreign']}")
    expected_connections = r["connections"]["ok"] if negotiated else 0
    check(name, wire["deflate_connections"] == expected_connections,
          f"deflate on {wire['deflate_connections']} connections, expected {expected_connections}")
    ratio = wire["compression_ratio"]
    check(name, ratio > 1.5 if negotiated else ratio < 1, f"compression ratio {ratio}")
    print(f"{name}: {wire['wire_bytes_per_delivery']:.1f} wire bytes per delivery, ratio {ratio:.2f}x, "
          f"deflate on {wire['deflate_connections']} of {r['connections']['ok']}")
if failed:
    print("check-loadgen-deflate: FAILED\n  " + "\n  ".join(failed), file=sys.stderr)
    sys.exit(1)
print("check-loadgen-deflate: ok")
PY
