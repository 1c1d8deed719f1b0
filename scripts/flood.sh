#!/usr/bin/env bash
# Flood check (tracker issue 9): a room of reading subscribers and one client that publishes
# 64-byte messages into it as fast as TCP lets it; the server's RSS is sampled every 0.5 s.
# Prints baseline, peak and growth, and the server's pause and close counters. Run it against
# ringcast (default) or any server command ("{port}" replaced by the port).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/flood.sh [options]
  --readers N       reading subscribers (default 2000)
  --seconds S       flood duration (default 15)
  --cores N         ringcast --cores (default 2)
  --server CMD      start this server instead of this repo's ringcast ("{port}" = the port)
  --port N          port (default 8097, below ip_local_port_range)
  --out DIR         where the samples and logs go (default a temp dir)
EOF
}
repo_root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=stop-process.sh
. "$repo_root/scripts/stop-process.sh"
readers=2000 seconds=15 cores=2 server_cmd="" port=8097 out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --readers) readers=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --cores) cores=${2:?}; shift 2 ;;
    --server) server_cmd=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; echo "flood.sh: unknown option: $1" >&2; exit 2 ;;
  esac
done
out_dir=${out_dir:-$(mktemp -d /tmp/ringcast-flood.XXXXXX)}
mkdir -p "$out_dir"
cd "$repo_root"
cargo build --release --quiet --locked -p ringcast -p loadgen
loadgen=target/release/loadgen

if [ -n "$server_cmd" ]; then
  read -r -a command <<<"${server_cmd//\{port\}/$port}"
else
  command=(target/release/ringcast --listen "127.0.0.1:$port" --cores "$cores")
fi
"${command[@]}" >"$out_dir/server.log" 2>&1 &
server_pid=$!
readers_pid="" flooder_pid=""
cleanup() {
  for pid in $flooder_pid $readers_pid; do kill "$pid" 2>/dev/null || true; done
  stop_process "$server_pid" 10
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status"; }

# Readers: subscribers only, held open for the flood and a little more.
"$loadgen" run --url "ws://127.0.0.1:$port/ws/flooded" --subscribers "$readers" --publishers 0 \
  --warmup 1s --duration "$((seconds + 10))s" --drain 1s --connect-rate 5000 --quiet \
  --out "$out_dir/readers" >"$out_dir/readers.log" 2>&1 &
readers_pid=$!
sleep 5
baseline=$(rss_kib)
# The flooder: one client writing masked 64-byte frames as fast as TCP lets it.
python3 "$repo_root/scripts/flood_client.py" --port "$port" --seconds "$seconds" \
  >"$out_dir/flooder.log" 2>&1 &
flooder_pid=$!
peak=$baseline
echo "t_s,rss_kib" >"$out_dir/rss.csv"
for tick in $(seq 1 $((seconds * 2))); do
  sleep 0.5
  rss=$(rss_kib)
  echo "$(awk "BEGIN {print $tick / 2}"),$rss" >>"$out_dir/rss.csv"
  [ "$rss" -gt "$peak" ] && peak=$rss
done
metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
sum_metric() { awk -v name="$1" '$1 ~ "^"name"([{]|$)" {sum += $2} END {print sum + 0}' <<<"$metrics"; }
echo "flood: readers=$readers seconds=$seconds server: ${command[*]}"
echo "flood: RSS baseline $((baseline / 1024)) MiB, peak $((peak / 1024)) MiB, growth $(((peak - baseline) / 1024)) MiB"
if [ -n "$metrics" ]; then
  echo "flood: messages in $(sum_metric ringcast_messages_in_total), publish pauses $(sum_metric ringcast_publish_pauses_total), slow-consumer closes $(sum_metric ringcast_slow_consumer_closes_total), connections $(sum_metric ringcast_connections)"
fi
wait "$flooder_pid" 2>/dev/null || true
flooder_pid=""
cat "$out_dir/flooder.log"
echo "flood: samples in $out_dir/rss.csv"
