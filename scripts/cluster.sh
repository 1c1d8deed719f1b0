#!/usr/bin/env bash
# A local cluster for trying and benchmarking scale-out: one Redis and N ringcast nodes on
# consecutive ports, all on one broker. Runs in the foreground; Ctrl-C (or SIGTERM) stops
# every node and Redis.
#
# Usage: scripts/cluster.sh N [-- ringcast arguments...]
#   N                 nodes (1-16), node i listening on 127.0.0.1:$((BASE_PORT + i))
#
# Environment: BASE_PORT (default 8080: nodes on 8080, 8081, ...), REDIS_PORT (default 6399),
# RINGCAST (the server binary; default: built with `cargo build --release -p ringcast`),
# CORES (--cores of each node, default 1), CLUSTER_DIR (logs; default a fresh /tmp dir).
#
# Example: scripts/cluster.sh 2, then
#   loadgen run --url ws://127.0.0.1:8080/ws/r --url ws://127.0.0.1:8081/ws/r
# spreads clients over both nodes; its report splits same-node and cross-node deliveries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stop-process.sh

nodes="${1:-}"
[[ "$nodes" =~ ^[0-9]+$ && "$nodes" -ge 1 && "$nodes" -le 16 ]] || {
    echo "usage: scripts/cluster.sh N [-- ringcast arguments...]  (N from 1 to 16)" >&2
    exit 2
}
shift
[[ "${1:-}" == "--" ]] && shift
BASE_PORT="${BASE_PORT:-8080}"
REDIS_PORT="${REDIS_PORT:-6399}"
CORES="${CORES:-1}"
CLUSTER_DIR="${CLUSTER_DIR:-$(mktemp -d /tmp/ringcast-cluster.XXXXXX)}"
mkdir -p "$CLUSTER_DIR"
command -v redis-server >/dev/null || {
    echo "cluster.sh: redis-server not found (apt-get install -y redis-server)" >&2
    exit 2
}
if [[ -z "${RINGCAST:-}" ]]; then
    cargo build --release --locked -p ringcast >&2
    RINGCAST=target/release/ringcast
fi

pids=()
redis_pid=""
stop_all() {
    for pid in "${pids[@]}"; do stop_process "$pid" 10; done
    stop_process "$redis_pid" 5
}
trap stop_all EXIT
trap 'exit 0' INT TERM

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    >"$CLUSTER_DIR/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    kill -0 "$redis_pid" 2>/dev/null || { echo "cluster.sh: redis-server failed, see $CLUSTER_DIR/redis.log" >&2; exit 1; }
    sleep 0.05
done

for i in $(seq 0 $((nodes - 1))); do
    port=$((BASE_PORT + i))
    "$RINGCAST" --listen "127.0.0.1:$port" --cores "$CORES" \
        --broker "redis://127.0.0.1:$REDIS_PORT" "$@" >"$CLUSTER_DIR/node-$i.log" 2>&1 &
    pids+=($!)
done
for i in $(seq 0 $((nodes - 1))); do
    port=$((BASE_PORT + i))
    for _ in $(seq 100); do
        [[ "$(curl -s "http://127.0.0.1:$port/readyz" 2>/dev/null)" == ready* ]] && break
        kill -0 "${pids[$i]}" 2>/dev/null || { echo "cluster.sh: node $i exited, see $CLUSTER_DIR/node-$i.log" >&2; exit 1; }
        sleep 0.05
    done
    echo "node $i: ws://127.0.0.1:$port/ws/ROOM  (pid ${pids[$i]}, log $CLUSTER_DIR/node-$i.log)"
done
echo "redis: 127.0.0.1:$REDIS_PORT (pid $redis_pid); Ctrl-C stops the cluster"
wait -n "${pids[@]}" "$redis_pid" || true
echo "cluster.sh: a process exited; stopping the cluster" >&2
