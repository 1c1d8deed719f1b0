#!/usr/bin/env bash
# Delivery under churn (issue 19): subscribers that drop and come back, against one or more
# servers in alternation (A, B, C, A, B, C, ...), with loadgen counting what each subscriber
# got of what was published (lost, duplicated, out of order), so a server without recovery
# is measured the same way as ringcast with it.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench-churn.sh [options] NAME=SERVER [NAME=SERVER ...]
  SERVER is a command that starts a server on "{port}" (e.g. "ringcast --cores 1", this
  repo's release build with its options, or "../shared/peers/uws/run.sh {port}").
  A NAME ending in "+recover" runs loadgen with --recover (clients reconnect with ?since=).
Options:
  --rounds N         runs per server (default 3)
  --subscribers N    (default 1000)      --rate R      messages/s of the one publisher (default 20)
  --churn E:D        loadgen --churn (default 15s:2s)
  --duration D       measured window (default 45s: three churn periods)
  --port P           server port (default 8097, below ip_local_port_range)
  --nodes 2          two nodes of each server on one Redis: the server command runs on
                     "{port}" = P and P+1 with "{redis}" = a redis-server's URL (port P+2,
                     started per run); loadgen gets both URLs (subscribers spread over
                     them, each reconnecting to the other node)
  --out DIR          DIR/NAME/run-R/report.json and DIR/summary.md
                     (default results/churn-<date>-<host>)
The server runs on CPU 1 (taskset -c 1), loadgen on CPU 0, as bench.sh runs them.
Example:
  scripts/bench-churn.sh 'ringcast+recover=ringcast --cores 1' 'ringcast=ringcast --cores 1' \
    'uws=../shared/peers/uws/run.sh {port}'
  scripts/bench-churn.sh --nodes 2 'ringcast+recover=ringcast --cores 1 --broker {redis}'
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3 subscribers=1000 rate=20 churn=15s:2s duration=45s port=8097 out_dir="" nodes=1
contenders=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=${2:?}; shift 2 ;;
    --subscribers) subscribers=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --churn) churn=${2:?}; shift 2 ;;
    --duration) duration=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --nodes) nodes=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *=*) contenders+=("$1"); shift ;;
    *) usage >&2; echo "bench-churn.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ ${#contenders[@]} -ge 1 ] || { usage >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-churn.sh: --rounds must be a positive integer" >&2; exit 2; }
[[ $nodes == 1 || $nodes == 2 ]] || { echo "bench-churn.sh: --nodes must be 1 or 2" >&2; exit 2; }
if [ "$nodes" = 2 ]; then
  command -v redis-server >/dev/null || { echo "bench-churn.sh: redis-server not found (apt-get install -y redis-server)" >&2; exit 2; }
fi
redis_port=$((port + 2))
host=$(hostname -s 2>/dev/null || hostname)
out_dir=${out_dir:-$repo_root/results/churn-$(date +%Y-%m-%d)-$host}
mkdir -p "$out_dir"
cd "$repo_root"
cargo build --release --quiet --locked -p ringcast -p loadgen
loadgen=$repo_root/target/release/loadgen

wait_for_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

{
  echo "# Delivery under churn"
  echo
  echo "Produced by \`scripts/bench-churn.sh --rounds $rounds --nodes $nodes --subscribers $subscribers --rate $rate --churn $churn --duration $duration$(printf " '%s'" "${contenders[@]}")\`"
  echo "at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (uncommitted changes)'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, kernel $(uname -r)."
} > "$out_dir/provenance.md"

for round in $(seq 1 "$rounds"); do
  for contender in "${contenders[@]}"; do
    name=${contender%%=*} server=${contender#*=}
    run_dir=$out_dir/$name/run-$round
    mkdir -p "$run_dir"
    recover=()
    [[ $name == *+recover ]] && recover=(--recover)
    server_pids=() pid_args=() urls=() redis_pid=""
    if [ "$nodes" = 2 ]; then
      taskset -c 1 redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        > "$run_dir/redis.log" 2>&1 &
      redis_pid=$!
      until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
    fi
    for node_port in $(seq "$port" $((port + nodes - 1))); do
      command=${server//\{port\}/$node_port}
      command=${command//\{redis\}/redis://127.0.0.1:$redis_port}
      if [ "$command" = ringcast ] || [[ $command == "ringcast "* ]]; then
        command="$repo_root/target/release/ringcast --listen 127.0.0.1:$node_port${command#ringcast}"
      fi
      echo "bench-churn.sh: round $round, $name: $command" >&2
      # shellcheck disable=SC2086 # the command is word-split on purpose
      taskset -c 1 $command > "$run_dir/server-$node_port.log" 2>&1 &
      server_pids+=($!) pid_args+=(--server-pid $!)
      urls+=(--url "ws://127.0.0.1:$node_port/ws/churn")
      if ! wait_for_port "$node_port"; then
        kill "${server_pids[@]}" $redis_pid 2>/dev/null || true
        echo "bench-churn.sh: $name did not listen on $node_port" >&2
        exit 1
      fi
    done
    # The nodes' broker links connect by themselves: wait until they are up.
    [ "$nodes" = 1 ] || for node_port in $(seq "$port" $((port + nodes - 1))); do
      until [[ "$(curl -s "http://127.0.0.1:$node_port/readyz" 2>/dev/null)" == ready* ]]; do sleep 0.05; done
    done
    [ -z "$redis_pid" ] || pid_args+=(--server-pid "$redis_pid")
    status=0
    taskset -c 0 "$loadgen" run "${urls[@]}" \
      --subscribers "$subscribers" --publishers 1 --rate "$rate" --duration "$duration" \
      --churn "$churn" "${recover[@]}" "${pid_args[@]}" --quiet \
      --out "$run_dir" > "$run_dir/summary.txt" 2>&1 || status=$?
    echo "$status" > "$run_dir/exit-status"
    kill "${server_pids[@]}" $redis_pid 2>/dev/null || true
    wait "${server_pids[@]}" $redis_pid 2>/dev/null || true
    sleep 1
  done
done

python3 - "$out_dir" "${contenders[@]}" <<'EOF'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
names = [c.split("=", 1)[0] for c in sys.argv[2:]]
rows = []
for name in names:
    runs = []
    for report in sorted((out / name).glob("run-*/report.json")):
        r = json.loads(report.read_text())["results"]
        churn = r.get("churn") or {}
        runs.append(r | {"_churn": churn})
    if not runs:
        continue
    def med(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        m = statistics.median(values)
        return f"{m:.4g} ({min(values):.4g}-{max(values):.4g})" if len(values) > 1 else f"{m:.4g}"
    def get(run, *path):
        for key in path:
            run = run.get(key) if isinstance(run, dict) else None
        return run
    rows.append((
        name,
        len(runs),
        med([100 * get(r, "delivery_rate") for r in runs if get(r, "delivery_rate") is not None]),
        med([get(r, "lost") for r in runs]),
        med([get(r, "duplicated") for r in runs]),
        med([get(r, "reordered") for r in runs]),
        med([get(r, "_churn", "left") for r in runs]),
        med([get(r, "_churn", "first_messages", "recovered") for r in runs]),
        med([get(r, "_churn", "first_messages", "reset") for r in runs]),
        med([(get(r, "_churn", "first_replay_ns", "p99") or 0) / 1e6 for r in runs if get(r, "_churn", "first_replay_ns", "p99") is not None]),
    ))
lines = [
    "| server | runs | delivered % | lost | duplicated | out of order | departures | recovered | reset | first replayed p99 (ms) |",
    "|---|---|---|---|---|---|---|---|---|---|",
    *[f"| {' | '.join(str(c) for c in row)} |" for row in rows],
]
(out / "summary.md").write_text("Medians (range) over the runs.\n\n" + "\n".join(lines) + "\n")
print("\n".join(lines))
EOF
