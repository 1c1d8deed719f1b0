#!/usr/bin/env bash
# Scaling across cores: runs bench.sh scenarios against ringcast at --cores 1, 2, 4, ... up to
# what the host has, alternating the core counts within every round (so a noisy host's drift
# hits them alike), and records deliveries/s and server CPU per delivery against cores
# (DIR/scale.md, DIR/scale.html). See results/README.md for how to read it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench-scale.sh [options]
  Server with N cores: ringcast --cores N pinned to the host's last N CPUs; loadgen pinned to
  the CPUs left (--threads = their count). When no CPU is left (N = all of them), loadgen
  shares the server's CPUs: that row is marked "shared" and its CPU per delivery includes
  the contention.
Options:
  --scenarios a,b   bench.sh scenarios (default fanout-5k; peak-4m shows the throughput
                    ceiling, chat the small-room path)
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
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le "$cpus" ] ||
    { echo "bench-scale.sh: --cores takes counts from 1 to this host's $cpus CPUs (got '$n')" >&2; exit 2; }
done
host=$(hostname -s 2>/dev/null || hostname)
out_dir=${out_dir:-$repo_root/results/scale-$(date +%Y-%m-%d)-$host}
mkdir -p "$out_dir"

cd "$repo_root"
cargo build --release --quiet --locked -p ringcast -p loadgen

# The server takes the last N CPUs, loadgen the ones before them (or all, shared).
server_cpus_for() { echo "$(($cpus - $1))-$(($cpus - 1))"; }
loadgen_cpus_for() {
  if [ "$1" -lt "$cpus" ]; then echo "0-$(($cpus - $1 - 1))"; else echo "0-$(($cpus - 1))"; fi
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
  echo "Produced by \`scripts/bench-scale.sh --scenarios $scenarios --cores $core_list --rounds $rounds${server_args:+ --server-args '$server_args'}\`;"
  echo "each round ran every core count once, in this order. Runs: \`cores-N/SCENARIO/run-R\`;"
  echo "medians per core count: \`cores-N/summary.md\`; against cores: \`scale.md\`, \`scale.html\`."
} >"$out_dir/README.md"
echo "bench-scale.sh: done: $out_dir" >&2
