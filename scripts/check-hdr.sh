#!/usr/bin/env bash
# Check loadgen's files with HdrHistogram implementations that are not loadgen's: Java's
# HistogramLogProcessor (Debian libhdrhistogram-java) and the Python `hdrhistogram` package (PyPI,
# in a venv). A fresh short loadgen run against a real ringcast, the merge of two loadgen
# processes run together, and every recorded run under results/ must agree with them:
# percentiles and counts of report.json, latency.hlog (its untagged intervals are report.json's
# latency), latency.hgrm and timeline.csv (scripts/hdr_check.py says what is compared).
#
#   scripts/check-hdr.sh [RUN_DIR...]     # default: fresh runs + results/*/*/run-*
#
# Installs what is missing: libhdrhistogram-java (and a Java runtime) with apt-get, the Python
# package into HDR_CHECK_VENV (default target/hdr-check-venv). HDR_CHECK_RECORDED=0 checks the
# fresh runs only. Exit 0 when every run agrees, 1 when one does not, 2 when the check could
# not run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stop-process.sh

die() { echo "check-hdr: $*" >&2; exit 2; }

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

dpkg -s libhdrhistogram-java >/dev/null 2>&1 || apt_install libhdrhistogram-java
command -v java >/dev/null || apt_install default-jre-headless
jar=$(dpkg -L libhdrhistogram-java | grep -E '/hdrhistogram[^/]*\.jar$' | head -n 1)
[ -f "$jar" ] || die "no HdrHistogram jar in libhdrhistogram-java (dpkg -L)"

venv=${HDR_CHECK_VENV:-target/hdr-check-venv}
if ! "$venv/bin/python" -c 'import hdrh' 2>/dev/null; then
  python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
  "$venv/bin/pip" install -q hdrhistogram || die "pip install hdrhistogram failed"
fi

runs=("$@")
if [ ${#runs[@]} -eq 0 ]; then
  cargo build --locked -q -p ringcast -p loadgen --bins || die "cargo build failed"
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  scratch=$(mktemp -d)
  server_pid=""
  trap 'stop_process "$server_pid" 5; rm -rf "$scratch"' EXIT
  "$target_dir/debug/ringcast" --listen "127.0.0.1:$port" --cores 1 >"$scratch/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || die "ringcast exited: $(cat "$scratch/server.log")"
    sleep 0.1
  done
  # A debug build on a busy CI machine: send lag is not what this checks (--max-send-lag 1s).
  loadgen_run() { # NAME ROOM SUBSCRIBERS
    "$target_dir/debug/loadgen" run --url "ws://127.0.0.1:$port/ws/$2" --subscribers "$3" \
      --publishers 2 --rate 200 --duration 3s --warmup 1s --drain 500ms --quiet \
      --max-send-lag 1s --server-pid "$server_pid" --out "$scratch/$1" >"$scratch/$1.out"
  }
  code=0
  loadgen_run fresh hdr-check 50 || code=$?
  [ "$code" -eq 0 ] || { cat "$scratch/fresh.out" >&2; die "loadgen run exited $code"; }
  # Two loadgen processes of one run (one room), merged: the merged files must hold up too.
  code=0
  loadgen_run part-a hdr-merge 20 &
  part_a=$!
  loadgen_run part-b hdr-merge 20 || code=$?
  wait "$part_a" || code=$?
  [ "$code" -eq 0 ] || { cat "$scratch"/part-*.out >&2; die "loadgen run (merge parts) exited $code"; }
  "$target_dir/debug/loadgen" merge --out "$scratch/merged" "$scratch/part-a" "$scratch/part-b" \
    >"$scratch/merge.out" || die "loadgen merge failed: $(cat "$scratch/merge.out")"
  stop_process "$server_pid" 5
  server_pid=""
  runs=("$scratch/fresh" "$scratch/merged")
  if [ "${HDR_CHECK_RECORDED:-1}" = 1 ]; then
    # Recorded run directories (committed ones, when in a git checkout: not the output of a
    # run still in progress) with all four files (a script may keep only some of them).
    recorded=$(git ls-files 'results/*/*/run-*/report.json' 2>/dev/null) ||
      recorded=$(ls results/*/*/run-*/report.json 2>/dev/null || true)
    for report in $recorded; do
      dir=$(dirname "$report")
      [ -f "$dir/latency.hlog" ] && [ -f "$dir/latency.hgrm" ] && [ -f "$dir/timeline.csv" ] &&
        runs+=("$dir")
    done
  fi
fi

"$venv/bin/python" scripts/hdr_check.py --jar "$jar" "${runs[@]}"
