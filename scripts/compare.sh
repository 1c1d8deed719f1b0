#!/usr/bin/env bash
# Compare two bench result directories (written by scripts/bench.sh) scenario by scenario with
# `loadgen compare --format markdown`, printing the tables a release note can paste.
#
#   scripts/compare.sh results/OLD results/NEW [--fail-if-worse PCT] [--html FILE]
#
# Extra options are passed to `loadgen compare`, except --html FILE, which also draws both
# directories into one page with scripts/plot.py. Exit status: 0, or 99 when loadgen compare
# reported a regression beyond --fail-if-worse for any scenario, or 2 on usage errors.
# (`loadgen compare OLD NEW` matches scenarios by name too, but refuses directories whose
# scenarios differ; this script compares the common ones and lists the rest.)
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  usage
  [ $# -ge 1 ] && [[ $1 == -h || $1 == --help ]] && exit 0
  exit 2
fi
old=$1 new=$2
shift 2
html_out=""
compare_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --html) html_out=${2:?--html needs a file}; shift 2 ;;
    *) compare_args+=("$1"); shift ;;
  esac
done
for dir in "$old" "$new"; do
  [ -d "$dir" ] || { echo "compare.sh: not a directory: $dir" >&2; exit 2; }
done

repo_root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=$(cd "$repo_root" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
loadgen="$target_dir/release/loadgen"
if [ ! -x "$loadgen" ]; then
  (cd "$repo_root" && cargo build --release --quiet -p loadgen)
fi

# A scenario is a sub-directory holding run-<i>/report.json files.
scenarios_of() {
  find "$1" -mindepth 3 -maxdepth 3 -path '*/run-*/report.json' | awk -F/ '{print $(NF-2)}' | sort -u
}
mapfile -t old_scenarios < <(scenarios_of "$old")
mapfile -t new_scenarios < <(scenarios_of "$new")

echo "## Benchmark comparison: $(basename "$old") -> $(basename "$new")"
echo
status=0
only_one=()
for scenario in "${old_scenarios[@]}"; do
  if [[ " ${new_scenarios[*]} " != *" $scenario "* ]]; then
    only_one+=("$scenario (only in $(basename "$old"))")
    continue
  fi
  echo "### $scenario"
  echo
  code=0
  "$loadgen" compare "$old/$scenario" "$new/$scenario" --format markdown \
    ${compare_args[@]+"${compare_args[@]}"} || code=$?
  case "$code" in
    0) ;;
    99) status=99 ;;
    *) echo "compare.sh: loadgen compare failed for $scenario (exit $code)" >&2; exit "$code" ;;
  esac
  echo
done
for scenario in "${new_scenarios[@]}"; do
  [[ " ${old_scenarios[*]} " == *" $scenario "* ]] || only_one+=("$scenario (only in $(basename "$new"))")
done
if [ ${#only_one[@]} -gt 0 ]; then
  echo "Not compared: ${only_one[*]}"
  echo
fi
if [ -n "$html_out" ]; then
  python3 "$repo_root/scripts/plot.py" "$old" "$new" -o "$html_out"
  echo "Plots: $html_out" >&2
fi
exit "$status"
