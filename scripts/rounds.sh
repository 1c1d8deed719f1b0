# shellcheck shell=bash
# Sourced by bench-alternate.sh and bench-scale.sh: regroups one contender's rounds of bench.sh
# runs, DIR/NAME/round-R/SCENARIO/run-1, as DIR/NAME/SCENARIO/run-R (the layout loadgen compare
# and bench_summary.py read as R runs of one scenario), keeps each round's provenance in
# DIR/NAME/provenance/round-R, and writes the medians to DIR/NAME/summary.md.
regroup_rounds() {
  local out_dir=$1 name=$2 round_dir round run_dir scenario
  for round_dir in "$out_dir/$name"/round-*; do
    round=${round_dir##*/round-}
    for run_dir in "$round_dir"/*/run-1; do
      [ -d "$run_dir" ] || continue
      scenario=$(basename "$(dirname "$run_dir")")
      mkdir -p "$out_dir/$name/$scenario"
      mv "$run_dir" "$out_dir/$name/$scenario/run-$round"
      rmdir "$round_dir/$scenario"
    done
    mkdir -p "$out_dir/$name/provenance"
    mv "$round_dir" "$out_dir/$name/provenance/round-$round"
  done
  python3 "$(dirname "${BASH_SOURCE[0]}")/bench_summary.py" "$out_dir/$name" >"$out_dir/$name/summary.md" ||
    echo "${0##*/}: no summary for $name" >&2
}
