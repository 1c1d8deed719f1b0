#!/usr/bin/env bash
# Scaling across cores: runs bench.sh scenarios against ringcast at --cores 1, 2, 4, ... up to
# what the host has, alternating the core counts within every round (so a noisy host's drift
# hits them alike), and records deliveries/s and server CPU per delivery against cores
# (DIR/scale.md, DIR/scale.html). What to expect and how to read it: README.md, "Scaling across
# cores" (and the README.md this script writes into DIR).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench-scale.sh [options]
  Server with N cores: ringcast --cores N pinned to the host's last N CPUs; loadgen pinned to
  the CPUs left (--threads = their count). When no CPU is left (N = all of them), loadgen
  shares the server's CPUs: that row is marked "shared" and its CPU per delivery includes
  the contention.
Options:
  --scenarios a,b   bench.sh scenarios (default fanout-5k; peak-4m the heaviest load,
                    4M deliveries/s, chat the small-room path); each offers a fixed rate
  --cores LIST      core counts, comma-separated (default 1,2,4,... up to the CPU count, and
                    the CPU count itself)
  --rounds N        runs per core count (default 3)
  --out DIR         results (default results/scale-<date>-<host>); runs in
                    DIR/cores-N/SCENARIO/run-R
  --server-args A   extra ringcast arguments (word-split)
  --quick           bench.sh --quick (to try the script; never for recorded results)
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
scenarios=fanout-5k rounds=3 out_dir="" server_args="" quick=() core_list=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) scenarios=${2:?}; shift 2 ;;
    --cores) core_list=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    --server-args) server_args=${2:?}; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-scale.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-scale.sh: --rounds must be a positive integer" >&2; exit 2; }
cpus=$(nproc)
if [ -z "$core_list" ]; then
  core_list=1
  n=2
  while [ "$n" -le "$cpus" ]; do core_list+=",$n"; n=$((n * 2)); done
  [[ ,$core_list, == *,$cpus,* ]] || core_list+=",$cpus"
fi
IFS=, read -r -a cores <<<"$core_list"
for n in "${cores[@]}"; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt "$cpus" ]; then
    echo "bench-scale.sh: --cores takes counts from 1 to this host's $cpus CPUs (got '$n')" >&2
    exit 2
  fi
done
host=$(hostname -s 2>/dev/null || hostname)
out_dir=${out_dir:-$repo_root/results/scale-$(date +%Y-%m-%d)-$host}
mkdir -p "$out_dir"

cd "$repo_root"
cargo build --release --quiet --locked -p ringcast -p loadgen

# The server takes the last N CPUs, loadgen the ones before them (or all, shared).
cpu_range() { if [ "$1" = "$2" ]; then echo "$1"; else echo "$1-$2"; fi; }
server_cpus_for() { cpu_range "$((cpus - $1))" "$((cpus - 1))"; }
loadgen_cpus_for() {
  if [ "$1" -lt "$cpus" ]; then cpu_range 0 "$((cpus - $1 - 1))"; else cpu_range 0 "$((cpus - 1))"; fi
}

for round in $(seq 1 "$rounds"); do
  for n in "${cores[@]}"; do
    echo "bench-scale.sh: round $round/$rounds: --cores $n" >&2
    "$repo_root/scripts/bench.sh" --scenarios "$scenarios" --repeat 1 --no-build \
      --label "cores-$n" --out "$out_dir/cores-$n/round-$round" "${quick[@]}" \
      --server-cpus "$(server_cpus_for "$n")" --server-cores "$n" \
      --loadgen-cpus "$(loadgen_cpus_for "$n")" --server-args "$server_args"
  done
done
# shellcheck source=rounds.sh
. "$repo_root/scripts/rounds.sh"
pinning=()
for n in "${cores[@]}"; do
  regroup_rounds "$out_dir" "cores-$n"
  pinning+=("$n:$(server_cpus_for "$n"):$(loadgen_cpus_for "$n")")
done
python3 "$repo_root/scripts/scale_summary.py" "$out_dir" "$cpus" "${pinning[@]}"
{
  echo "# Scaling across cores on $host ($cpus CPUs)"
  echo
  # shellcheck disable=SC2016 # $server_args is expanded; the single quotes are text
  echo "Produced by \`scripts/bench-scale.sh --scenarios $scenarios --cores $core_list --rounds $rounds${server_args:+ --server-args '$server_args'}\`;"
  echo "each round ran every core count once, in this order. Runs: \`cores-N/SCENARIO/run-R\`;"
  echo "each round's provenance: \`cores-N/provenance/round-R/README.md\`; medians per core count:"
  echo "\`cores-N/summary.md\`; against cores: \`scale.md\`, \`scale.html\`."
  echo
  echo "CPU split: with N cores the server ran \`ringcast --cores N\` pinned to this host's last N"
  echo "CPUs and loadgen to the CPUs before them with \`--threads\` = their count; where none was"
  echo "left, loadgen shared the server's CPUs (\"shared\" in \`scale.md\`: that row's CPU per"
  echo "delivery and latency include the contention)."
  echo
  echo "| cores | server CPUs | loadgen CPUs |"
  echo "|---|---|---|"
  for n in "${cores[@]}"; do
    shared=""
    [ "$n" -lt "$cpus" ] || shared=" (shared)"
    echo "| $n | $(server_cpus_for "$n") | $(loadgen_cpus_for "$n")$shared |"
  done
  echo
  echo "How to read \`scale.md\`: every bench.sh scenario offers a fixed rate, so deliveries/s equals"
  echo "the offered rate at every core count that kept up (fewer: that count did not). One busy core"
  echo "carries at least about 1,000,000 / (CPU µs per delivery) deliveries/s (more under heavier"
  echo "load, where writes coalesce), so capacity grows near-linearly with cores while CPU per"
  echo "delivery stays flat, until loadgen's CPUs or loopback are the limit. A rise in CPU per"
  echo "delivery with cores is the cross-core cost (each message is mailed from its room's home core"
  echo "to the N-1 others: spread thin in fanout-5k's large room, a larger share in chat's small"
  echo "rooms) or, in a shared row, the contention. \`valid runs\` counts the runs loadgen did not"
  echo "flag (failed connections, publishers behind schedule); only those are in the medians (ranges"
  echo "in brackets). Check loadgen's own CPU in \`cores-N/summary.md\` (percent of one CPU): near"
  echo "100% times its CPU count means the driver was the limit. Details: README.md, \"Scaling across"
  echo "cores\", in the ringcast repository."
} >"$out_dir/README.md"
echo "bench-scale.sh: done: $out_dir" >&2
