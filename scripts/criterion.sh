#!/usr/bin/env bash
# Runs the criterion micro-benchmarks (`cargo bench -p ringcast-benches`) and records their
# estimates in OUT_DIR/criterion.txt with the provenance (commit, date, kernel, CPU): the file
# the README's micro-benchmark figures come from.
#
# Usage: scripts/criterion.sh OUT_DIR [BENCH_FILTER]
#   BENCH_FILTER   passed to criterion (e.g. fanout_flush) to run only matching benchmarks
set -euo pipefail

out_dir=${1:?usage: scripts/criterion.sh OUT_DIR [BENCH_FILTER]}
filter=${2:-}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
mkdir -p "$out_dir"

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- server benches Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  commit="$commit (with uncommitted changes to server/, benches/ or Cargo files)"
fi
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
# --noplot: no gnuplot/plotters output; the estimates are what is recorded.
cargo bench --locked -p ringcast-benches -- --noplot ${filter:+"$filter"} 2>&1 | tee "$raw" >&2
{
  echo "# cargo bench -p ringcast-benches${filter:+ -- $filter} (scripts/criterion.sh)"
  echo "# commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), ${cpu:-unknown CPU}, $(nproc) CPUs"
  echo "# criterion's [low estimate median high] per benchmark; its 'change' lines (against an older local run) are left out."
  echo
  # Keep each benchmark's name, time and throughput lines; drop progress, change and
  # outlier chatter. A long name is printed on a line of its own before its "time:" line:
  # join them.
  awk '
    /^Benchmarking/ { next }
    /^[^ ].*time:/ { print; next }
    /^[^ ]/ && !/:/ { pending = $0; next }
    /^ +time:/ {
      if (pending != "") { sub(/^ +/, ""); printf "%-23s %s\n", pending, $0; pending = "" }
      else print
      next
    }
    /^ +thrpt:/ { print }
  ' "$raw"
} >"$out_dir/criterion.txt"
echo "criterion.sh: wrote $out_dir/criterion.txt" >&2
