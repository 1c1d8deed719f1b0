#!/usr/bin/env bash
# Scale-out cost on one host: the same clients on one ringcast node, then spread over two nodes
# that share rooms through Redis (--broker), alternating (single, cluster, single, ...) so a
# noisy machine's drift hits both alike.
#
# Usage: scripts/bench-cluster.sh [--rounds N] [--out DIR] [--quick] [--baseline BIN]
#   --rounds N   runs of each setup (default 3)
#   --baseline BIN  also the two-node setup with another ringcast build (e.g. main's), in the
#                same alternation (single, baseline, cluster, ...): an A/B of the cluster path
#   --out DIR    results (default results/cluster-<date>-<host>): DIR/{single,cluster}/run-R/
#                with report.json and the commands, DIR/README.md (provenance and the summary)
#   --quick      short and small, to try the script (output under /tmp unless --out)
#
# Both setups: one room, SUBSCRIBERS subscribers (default 5000) and 2 publishers at RATE msg/s
# each (default 10: 100k deliveries/s), 64 B. Every server-side process (the node, or both
# nodes and redis-server) runs on CPU 1 (taskset), --cores 1 each; loadgen on CPU 0. The CPU
# per delivery is the sum over those processes (loadgen --server-pid, repeated), so it is what
# the whole setup spends. With two nodes, node i holds every other connection: one publisher
# per node, half of each message's receivers on the other node; loadgen's report splits
# same-node and cross-node deliveries and latency.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stop-process.sh

rounds=3 out_dir="" quick=0 baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-cluster.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-cluster.sh: --rounds must be a positive integer" >&2; exit 2; }
[ -z "$baseline" ] || [ -x "$baseline" ] || { echo "bench-cluster.sh: --baseline $baseline is not an executable" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "bench-cluster.sh: redis-server not found (apt-get install -y redis-server)" >&2; exit 2; }

SUBSCRIBERS=${SUBSCRIBERS:-5000} RATE=${RATE:-10}
warmup=5 duration=15
if [ "$quick" = 1 ]; then SUBSCRIBERS=300 warmup=1 duration=3; fi
host=$(hostname -s 2>/dev/null || hostname)
if [ -z "$out_dir" ]; then
  if [ "$quick" = 1 ]; then out_dir=/tmp/ringcast-bench/cluster-quick-$(date +%Y-%m-%d)
  else out_dir=results/cluster-$(date +%Y-%m-%d)-$host; fi
fi
mkdir -p "$out_dir"
ports=(7301 7302) redis_port=7399

cargo build --release --quiet --locked -p ringcast -p loadgen
ringcast=target/release/ringcast loadgen=target/release/loadgen

pids=()
stop_all() { for pid in "${pids[@]}"; do stop_process "$pid" 10; done; pids=(); }
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

wait_ready() { # PORT PID LOG
  for _ in $(seq 200); do
    [[ "$(curl -s "http://127.0.0.1:$1/readyz" 2>/dev/null)" == ready* ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "bench-cluster.sh: server exited, see $3" >&2; exit 1; }
    sleep 0.05
  done
  echo "bench-cluster.sh: no /readyz 200 on port $1, see $3" >&2; exit 1
}

# run SETUP ROUND: starts the setup's processes, runs loadgen, stops them.
run() {
  local setup=$1 round=$2 dir="$out_dir/$1/run-$2" urls=() server_pids=()
  mkdir -p "$dir"
  local node_args=(--cores 1) binary=$ringcast
  [ "$setup" = baseline ] && binary=$baseline
  if [ "$setup" != single ]; then
    taskset -c 1 redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
      >"$dir/redis.log" 2>&1 &
    pids+=($!) server_pids+=($!)
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
    node_args+=(--broker "redis://127.0.0.1:$redis_port")
  fi
  local nodes=1; [ "$setup" != single ] && nodes=2
  for i in $(seq 0 $((nodes - 1))); do
    taskset -c 1 "$binary" --listen "127.0.0.1:${ports[$i]}" "${node_args[@]}" \
      >"$dir/node-$i.log" 2>&1 &
    pids+=($!) server_pids+=($!)
    wait_ready "${ports[$i]}" "$!" "$dir/node-$i.log"
    urls+=(--url "ws://127.0.0.1:${ports[$i]}/ws/bench")
  done
  local pid_args=()
  for pid in "${server_pids[@]}"; do pid_args+=(--server-pid "$pid"); done
  local command=(taskset -c 0 "$loadgen" run "${urls[@]}" --subscribers "$SUBSCRIBERS"
    --publishers 2 --rate "$RATE" --size 64 --connect-rate 5000 --warmup "$warmup"
    --duration "$duration" --drain 2 --src 127.0.0.1-127.0.0.8 "${pid_args[@]}" --out "$dir")
  {
    echo "${command[*]}"
    echo "server-side processes: ${server_pids[*]} ($binary ${node_args[*]}; redis-server with the cluster)"
  } >"$dir/commands.txt"
  echo "== $setup round $round" >&2
  "${command[@]}" >"$dir/stdout.txt" 2>"$dir/stderr.txt" || echo "loadgen exited $? (see $dir/stdout.txt)" >&2
  tail -n 30 "$dir/stdout.txt" >&2
  stop_all
}

for round in $(seq 1 "$rounds"); do
  run single "$round"
  [ -z "$baseline" ] || run baseline "$round"
  run cluster "$round"
done

{
  echo "# Scale-out on one host: one node against two nodes on a Redis broker"
  echo
  [ "$quick" = 1 ] && echo "**Quick run (--quick): short and small, not a recorded result.**" && echo
  echo "Produced by \`scripts/bench-cluster.sh --rounds $rounds\` at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "on $host ($(nproc) CPUs, $(uname -sr)), git $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' (uncommitted changes)'),"
  echo "$(redis-server --version | cut -d' ' -f1-3). $SUBSCRIBERS subscribers + 2 publishers x $RATE msg/s, 64 B, one room;"
  echo "warm-up ${warmup}s, measured ${duration}s. Server side (node, or 2 nodes + Redis) on CPU 1, loadgen on CPU 0."
  echo "Each run's loadgen command is in \`<setup>/run-<r>/commands.txt\`."
  [ -z "$baseline" ] || echo "Baseline (\`baseline/\`): the same two-node setup with \`$baseline\`."
  echo
  python3 scripts/cluster_summary.py "$out_dir"
} >"$out_dir/README.md"
cat "$out_dir/README.md"
