#!/usr/bin/env bash
# A/B of criterion micro-benchmarks: the benches built at BASE_REV against the working tree,
# run alternately (base, head, base, head, ...) so a noisy machine's drift hits both alike.
# Writes OUT_DIR/{base,head}/round-R/<bench>.txt (criterion's output), OUT_DIR/README.md
# (provenance) and OUT_DIR/summary.md (per benchmark: the median and range of criterion's
# estimates over the rounds, and head/base).
#
# Usage: scripts/criterion-ab.sh [--rounds N] [--filter BENCH:FILTER ...] BASE_REV OUT_DIR
#   --rounds N              rounds (default 3)
#   --filter BENCH:FILTER   a bench binary and criterion's filter, repeatable
#                           (default fanout:fanout_flush and handoff:handoff)
# BASE_REV is built in a temporary git worktree (its target directory is kept in
# ${CRITERION_AB_CACHE:-/tmp/ringcast-criterion-ab} so a second run builds nothing). Benches
# named fanout* run pinned to CPU 1 (one core, as the server runs); the others (handoff uses
# two threads) on every CPU.
set -euo pipefail

rounds=3 filters=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?}; shift 2 ;;
    --filter) filters+=("${2:?}"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "criterion-ab.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
base_rev=$1 out_dir=$2 out_arg=$2
[ ${#filters[@]} -gt 0 ] || filters=(fanout:fanout_flush handoff:handoff)
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "criterion-ab.sh: --rounds must be a positive integer" >&2; exit 2; }

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
base_commit=$(git rev-parse --verify "$base_rev^{commit}")
head_commit=$(git rev-parse HEAD)
dirty=$([ -n "$(git status --porcelain -- server benches Cargo.toml Cargo.lock)" ] && echo " (with uncommitted changes)" || true)
cache=${CRITERION_AB_CACHE:-/tmp/ringcast-criterion-ab}
mkdir -p "$out_dir" "$cache"
out_dir=$(cd "$out_dir" && pwd)

# The bench executables of the checkout in $1 (target dir $2), one "name path" per line.
bench_executables() {
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo bench --locked -p ringcast-benches --no-run \
      --message-format=json 2>/dev/null) |
    python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
            and "bench" in msg["target"]["kind"]:
        print(msg["target"]["name"], msg["executable"])'
}

worktree=$(mktemp -d)
trap 'git -C "$repo_root" worktree remove --force "$worktree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach --quiet "$worktree" "$base_commit"
echo "criterion-ab.sh: building the benches at $base_rev ($base_commit)" >&2
declare -A base_exe head_exe
while read -r name path; do base_exe[$name]=$path; done < <(bench_executables "$worktree" "$cache/target")
echo "criterion-ab.sh: building the benches of the working tree" >&2
while read -r name path; do head_exe[$name]=$path; done < <(bench_executables "$repo_root" "$repo_root/target")

run_side() { # side round
  local side=$1 round=$2 dir="$out_dir/$1/round-$2"
  mkdir -p "$dir"
  for spec in "${filters[@]}"; do
    local bench=${spec%%:*} filter=${spec#*:} exe cpus=0-$(($(nproc) - 1))
    if [ "$side" = base ]; then exe=${base_exe[$bench]:-}; else exe=${head_exe[$bench]:-}; fi
    [ -n "$exe" ] || { echo "criterion-ab.sh: no bench named $bench on the $side side" >&2; exit 2; }
    [[ $bench == fanout* ]] && cpus=1
    echo "criterion-ab.sh: round $round/$rounds: $side $bench $filter (CPUs $cpus)" >&2
    # Each side keeps its own criterion directory, so neither reports "change" against the other.
    CRITERION_HOME="$cache/criterion-$side" taskset -c "$cpus" "$exe" --bench --noplot "$filter" \
      >"$dir/$bench.txt" 2>&1
  done
}
for round in $(seq 1 "$rounds"); do
  run_side base "$round"
  run_side head "$round"
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
  echo "# Criterion A/B: $base_rev against the working tree"
  echo
  echo "Produced by \`scripts/criterion-ab.sh --rounds $rounds$(printf ' --filter %s' "${filters[@]}") $base_rev $out_arg\`"
  echo "on $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), ${cpu:-unknown CPU}, $(nproc) CPUs."
  echo
  echo "- base: $base_commit"
  echo "- head: $head_commit$dirty"
  echo
  echo "Rounds ran base then head, alternately. Raw criterion output: \`base/round-R/<bench>.txt\`,"
  echo "\`head/round-R/<bench>.txt\`. Summary (medians and ranges of criterion's estimates over the"
  echo "rounds): [summary.md](summary.md)."
} >"$out_dir/README.md"
python3 - "$out_dir" "$rounds" >"$out_dir/summary.md" <<'PY'
import os, re, statistics, sys
out_dir, rounds = sys.argv[1], int(sys.argv[2])
unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
estimates = {}  # (side, benchmark) -> [ns per iteration, one per round]
time_line = re.compile(r"^(\S+)?\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]")
for side in ("base", "head"):
    for round_ in range(1, rounds + 1):
        directory = os.path.join(out_dir, side, f"round-{round_}")
        for name in sorted(os.listdir(directory)):
            # A long benchmark name is printed on a line of its own before its "time:" line.
            named = None
            for line in open(os.path.join(directory, name), encoding="utf-8", errors="replace"):
                if line.startswith("Benchmarking"):
                    continue
                m = time_line.match(line)
                if m:
                    bench = m.group(1) or named
                    estimates.setdefault((side, bench), []).append(float(m.group(2)) * unit[m.group(3)])
                    named = None
                elif line[:1] not in (" ", "\n") and len(line.split()) == 1:
                    named = line.strip()
def fmt(ns):
    return f"{ns / 1e3:.3f} µs" if ns >= 1e3 else f"{ns:.1f} ns"
print("| benchmark | base: median (range) | head: median (range) | head / base |")
print("|---|---|---|---|")
for bench in sorted({b for _, b in estimates}):
    base, head = estimates.get(("base", bench), []), estimates.get(("head", bench), [])
    if not base or not head:
        continue
    mb, mh = statistics.median(base), statistics.median(head)
    print(f"| {bench} | {fmt(mb)} ({fmt(min(base))}-{fmt(max(base))}) | "
          f"{fmt(mh)} ({fmt(min(head))}-{fmt(max(head))}) | {mh / mb:.2f} |")
PY
cat "$out_dir/summary.md"
