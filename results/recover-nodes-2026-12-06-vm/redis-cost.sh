#!/usr/bin/env bash
# What one message costs Redis: the publish link's script (server/src/fanout/broker/
# publish_link.rs, SEQUENCE, taken from the source) against the plain PUBLISH of before, each
# with two subscribers on the channel (two nodes). redis-server on CPU 1, redis-benchmark on
# CPU 0 (one connection, 16 commands pipelined, so Redis is the bottleneck); Redis's CPU per
# command from /proc (utime + stime) over each run; alternating, ROUNDS rounds (default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3} port=7499 n=200000
script=$(sed -n '/^const SEQUENCE: &str = r"$/,/^";$/p' server/src/fanout/broker/publish_link.rs | sed '1d;$d')
payload=$(head -c 66 /dev/zero | tr '\0' 'x')   # a 64-byte message's frame
taskset -c 1 redis-server --bind 127.0.0.1 --port $port --save '' --appendonly no >/dev/null 2>&1 &
redis=$!
subscribers=()
trap 'kill "${subscribers[@]}" $redis 2>/dev/null || true' EXIT
until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.05; done
for _ in 1 2; do
  redis-cli -p $port SUBSCRIBE ringcast:r >/dev/null &
  subscribers+=($!)
done
sha=$(redis-cli -p $port SCRIPT LOAD "$script")
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$redis/stat; }
run() { # NAME COMMAND...
  local before after
  before=$(cpu)
  taskset -c 0 redis-benchmark -p $port -n $n -c 1 -P 16 -q "${@:2}" | tr '\r' '\n' | tail -1 >&2
  after=$(cpu)
  python3 -c "import sys; print(f'$1 {($after - $before) / $ticks * 1e6 / $n:.2f} us of Redis CPU per message')"
}
echo "redis: $(redis-server --version | cut -d' ' -f1-3); $n commands per run; subscribers: 2"
for round in $(seq "$rounds"); do
  echo "round $round"
  run publish PUBLISH ringcast:r "$payload"
  run script EVALSHA "$sha" 2 ringcast:r ringcast:r 0123456789abcdef 300000 "$payload"
done
