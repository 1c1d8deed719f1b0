#!/usr/bin/env bash
# Soak test (tracker issue 9, item 3): one ringcast server, N minutes of mixed load from loadgen
# (a long healthy room with slow consumers, connection churn, a flooder), the server's RSS, fds
# and connections sampled every second into samples.csv, and a summary.md + soak.svg with the
# RSS slope after warm-up, fds back at baseline and loss at the healthy clients.
# `scripts/soak.sh 10` is the command that records results/soak-<date>-<host>/.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/soak.sh [MINUTES] [options]

MINUTES (default 10; decimals allowed, at least 0.5) is how long the drivers run. Timeline:
server start, a few seconds of baseline samples, drivers for MINUTES, --settle seconds with no
client, server stopped with SIGTERM. Drivers (all loadgen, loopback, each bounded by timeout):
  healthy  one `loadgen run` for the whole soak in room soak-healthy: 500 subscribers
           (5% of them stalled: the server must close them with 1008) and 2 publishers,
           --threshold lost==0
  churn    back-to-back short `loadgen run`s (200 clients, connect, chat ~5 s, leave) in room
           soak-churn until the deadline; each run's result is a row of churn.csv
  flood    a publisher in room soak-flood with --rate far beyond what TCP carries (the server
           must push back on it, not buffer), plus one subscriber; restarted every
           --flood-segment seconds (and when the server closes it); rows in flood.csv

Writes to DIR: samples.csv (t_s,rss_kib,fds,connections,queued_bytes,slow_consumer_closes,
messages_in), events.csv, commands.txt, healthy/ (loadgen report), churn.csv, flood.csv,
flood/, server.log, summary.md, soak.svg.

Exit status: 0 pass; 1 a check failed (the healthy clients or a churn run lost messages or
failed, fds not back at baseline + --fd-tolerance, RSS slope above --max-rss-slope when given);
2 usage or setup error.

Options:
  --out DIR            result directory (default results/soak-<date>-<host>, numbered .2, .3 if
                       it exists)
  --port N             server port (default: first free one from 8095, below
                       ip_local_port_range)
  --server-cpus LIST   taskset the server to these CPUs (default: not pinned)
  --driver-cpus LIST   taskset the loadgen drivers to these CPUs (default: not pinned)
  --server-cores N     ringcast --cores (default 2)
  --server-args ARGS   extra ringcast arguments (word-split)
  --warmup-percent P   RSS slope is fitted after the first P% of the drivers' time (default 20)
  --settle S           seconds with no clients before fds are compared (default 10)
  --fd-tolerance N     fds at the end may exceed the baseline by N (default 2)
  --max-rss-slope K    also fail when the post-warm-up RSS slope exceeds K KiB/min (default:
                       report only)
  --flood-rate R       flooder's --rate, msg/s (default 200000)
  --flood-size BYTES   flooder's --size (default 1KiB)
  --flood-segment S    length of one flooder run (default 30)
  --no-flood           run without the flooder (to tell its effect from the rest)
  --no-build           use the existing release binaries
  --keep-hlog          keep healthy/latency.hlog (per-second histograms, ~4 MB per 10 min)
  -h, --help           this text
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
scripts_dir="$repo_root/scripts"
# shellcheck source=stop-process.sh
. "$scripts_dir/stop-process.sh"
invocation="scripts/soak.sh${*:+ $*}"

die() { echo "soak.sh: $*" >&2; exit 2; }
log() { echo "soak.sh: $(date -u +%H:%M:%S) $*" >&2; }

minutes=10
out_dir=""
port=""
server_cpus=""
driver_cpus=""
server_cores=2
server_args=""
warmup_percent=20
settle=10
fd_tolerance=2
max_rss_slope=""
flood_rate=200000
flood_size=1KiB
flood_segment=30
flood=1
build=1
keep_hlog=0

while [ $# -gt 0 ]; do
  case "$1" in
    --out) out_dir=${2:?--out needs a directory}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --server-cpus) server_cpus=${2:?}; shift 2 ;;
    --driver-cpus) driver_cpus=${2:?}; shift 2 ;;
    --server-cores) server_cores=${2:?}; shift 2 ;;
    --server-args) server_args=${2?}; shift 2 ;;
    --warmup-percent) warmup_percent=${2:?}; shift 2 ;;
    --settle) settle=${2:?}; shift 2 ;;
    --fd-tolerance) fd_tolerance=${2:?}; shift 2 ;;
    --max-rss-slope) max_rss_slope=${2:?}; shift 2 ;;
    --flood-rate) flood_rate=${2:?}; shift 2 ;;
    --flood-size) flood_size=${2:?}; shift 2 ;;
    --flood-segment) flood_segment=${2:?}; shift 2 ;;
    --no-flood) flood=0; shift ;;
    --no-build) build=0; shift ;;
    --keep-hlog) keep_hlog=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) minutes=$1; shift ;;
  esac
done

[[ $minutes =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MINUTES must be a number, got '$minutes'"
soak_s=$(python3 -c "print(round($minutes * 60))")
[ "$soak_s" -ge 30 ] || die "MINUTES must be at least 0.5"
for name in settle fd_tolerance server_cores warmup_percent flood_segment; do
  [[ ${!name} =~ ^[0-9]+$ ]] || die "--${name//_/-} must be a non-negative integer"
done
[ "$warmup_percent" -lt 100 ] || die "--warmup-percent must be below 100"
[ "$flood_segment" -ge 10 ] || die "--flood-segment must be at least 10"
[ -z "$max_rss_slope" ] || [[ $max_rss_slope =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
  die "--max-rss-slope must be a number (KiB/min)"

# The ephemeral range is where the clients' ports come from; keep the server below it.
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
if [ -z "$port" ]; then
  port=8095
  while port_listening "$port"; do
    port=$((port + 1))
    [ "$port" -lt "$ephemeral_low" ] || die "no free port between 8095 and $ephemeral_low"
  done
fi
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -lt "$ephemeral_low" ] ||
  die "--port must be a number below net.ipv4.ip_local_port_range ($ephemeral_low)"
port_listening "$port" && die "port $port is already in use"

# ---------------------------------------------------------------- processes and cleanup
bin_dir=""
server_pid="" sampler_pid=""
driver_pids=()
now() { date +%s.%N; }
event() { echo "$1,$(now)" >>"$out_dir/events.csv"; }

cleanup() {
  local pid
  for pid in "${driver_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${driver_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  driver_pids=()
  if [ -n "$sampler_pid" ]; then
    kill -TERM "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=""
  fi
  stop_process "$server_pid" 15
  server_pid=""
  [ -n "${bin_dir:-}" ] && rm -rf "$bin_dir"
  bin_dir=""
}
trap cleanup EXIT
trap 'log "interrupted"; cleanup; exit 130' INT TERM

# ---------------------------------------------------------------- binaries
cd "$repo_root"
if [ "$build" = 1 ]; then
  log "building release binaries"
  cargo build --release --quiet -p ringcast -p loadgen --locked ||
    die "cargo build failed (someone's edit in progress? retry, or --no-build)"
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ringcast_bin="$target_dir/release/ringcast"
loadgen_bin="$target_dir/release/loadgen"
[ -x "$ringcast_bin" ] || die "no ringcast binary at $ringcast_bin"
[ -x "$loadgen_bin" ] || die "no loadgen binary at $loadgen_bin"
# Run private copies: the target dir is shared, and a rebuild during a long soak must not swap
# the binaries of the churn and flood runs started later. commands.txt names the originals.
bin_dir=$(mktemp -d "${TMPDIR:-/tmp}/soak-bin.XXXXXX")
cp "$ringcast_bin" "$loadgen_bin" "$bin_dir/"
ringcast_shown=${ringcast_bin#"$repo_root/"} loadgen_shown=${loadgen_bin#"$repo_root/"}
ringcast_bin="$bin_dir/ringcast" loadgen_bin="$bin_dir/loadgen"

# ---------------------------------------------------------------- result directory
stamp=$(date -u +%Y-%m-%d)
host=$(hostname -s 2>/dev/null || hostname)
if [ -z "$out_dir" ]; then
  out_dir="results/soak-$stamp-$host"
  base=$out_dir n=2
  while [ -e "$out_dir" ]; do out_dir="$base.$n"; n=$((n + 1)); done
fi
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
[ -e "$out_dir/samples.csv" ] && die "$out_dir already holds a soak (samples.csv); pick another --out"
log "writing $out_dir (drivers for ${soak_s}s)"

server_cmd=("$ringcast_bin" --listen "127.0.0.1:$port" --cores "$server_cores")
if [ -n "$server_args" ]; then
  read -r -a extra <<<"$server_args"
  server_cmd+=("${extra[@]}")
fi
[ -n "$server_cpus" ] && server_cmd=(taskset -c "$server_cpus" "${server_cmd[@]}")
driver_prefix=()
[ -n "$driver_cpus" ] && driver_prefix=(taskset -c "$driver_cpus")
url_base="ws://127.0.0.1:$port/ws"

# run_bounded LIMIT_S LOG_PREFIX CMD...: runs CMD under timeout in the background and waits for
# it, so a TERM to this (driver) subshell reaches it at once; returns CMD's status.
run_bounded() {
  local limit=$1 prefix=$2 status=0
  shift 2
  timeout --kill-after=10 "$limit" "$@" >"$prefix.stdout" 2>"$prefix.stderr" &
  child=$!
  wait "$child" || status=$?
  child=""
  return "$status"
}
driver_trap() {
  child=""
  trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; exit 143' TERM INT
}

# One row of churn.csv / flood.csv from a loadgen report (empty figures when there is none).
report_row() { # RUN START_S EXIT DIR
  python3 - "$@" <<'PY'
import json, sys
run, start, status, path = sys.argv[1:5]
try:
    r = json.load(open(path + "/report.json"))["results"]
    c = r["connections"]
    fields = [c["ok"], c["failed"], c["disconnected"], r["sent"], r["expected"], r["delivered"],
              r["lost"], r["stalled"]["closed_by_server"],
              "; ".join(r["invalid_reasons"]).replace(",", " ")]
except (OSError, ValueError, KeyError):
    fields = [""] * 8 + ["no report"]
print(",".join(str(v) for v in [run, start, status] + fields))
PY
}
row_header="run,start_s,exit,connections_ok,connections_failed,disconnected,sent,expected,delivered,lost,stalled_closed_by_server,invalid_reasons"

# ---------------------------------------------------------------- drivers
# Healthy room: 500 subscribers, 2 x 10 msg/s of 1 KiB (10k deliveries/s, 20 KB/s each: a
# load one loadgen thread receives with room to spare while the flooder and the churn share
# the two CPUs; at 25k deliveries/s of 4 KiB its receivers fell behind and were rightly closed
# as slow consumers), 5% stalled from the window start (the server closes them with 1008 once
# their socket buffers are full: at --max-backlog or after --write-timeout). --max-send-lag 1s: on a small host the
# flooder and churn share the CPUs with the publishers; loss, not latency, is judged here, and
# loadgen counts a message arriving after --drain as lost, so the drain (10 s healthy, 5 s
# churn) is well above the seconds of latency a saturated 2-CPU host shows.
healthy_warmup=5 healthy_drain=10
healthy_duration=$((soak_s - healthy_warmup - healthy_drain - 5))
healthy_cmd=("${driver_prefix[@]}" "$loadgen_bin" run --url "$url_base/soak-healthy"
  --subscribers 500 --publishers 2 --rate 10 --size 1KiB --stalled 5
  --warmup "$healthy_warmup" --duration "$healthy_duration" --drain "$healthy_drain"
  --connect-rate 2000 --max-send-lag 1s --threads 1 --threshold lost==0 --quiet
  --out "$out_dir/healthy")
healthy_driver() {
  driver_trap
  local status=0
  run_bounded $((soak_s + 60)) "$out_dir/healthy" "${healthy_cmd[@]}" || status=$?
  echo "$status" >"$out_dir/healthy.exit"
  # Per-second histograms: ~4 MB per 10 min; timeline.csv keeps per-second p50/p99/max.
  [ "$keep_hlog" = 1 ] || rm -f "$out_dir/healthy/latency.hlog"
}

# Churn room: 180 subscribers + 20 publishers x 5 msg/s, ~12 s per run (connect, 1 s warm-up,
# 5 s chat, 5 s drain, close); runs back to back until less than one run is left.
churn_cmd_for() { # OUT_DIR
  churn_cmd=("${driver_prefix[@]}" "$loadgen_bin" run --url "$url_base/soak-churn"
    --subscribers 180 --publishers 20 --rate 5 --size 256 --warmup 1 --duration 5 --drain 5
    --connect-rate 2000 --max-send-lag 1s --threads 1 --threshold lost==0 --quiet --out "$1")
}
churn_driver() {
  driver_trap
  local run=0 status start
  mkdir -p "$out_dir/churn"
  echo "$row_header" >"$out_dir/churn.csv"
  while [ "$(python3 -c "import time; print(int(time.time() < $deadline - 16))")" = 1 ]; do
    run=$((run + 1))
    start=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
    local dir="$out_dir/churn/run-$run"
    churn_cmd_for "$dir"
    status=0
    run_bounded 60 "$dir" "${churn_cmd[@]}" || status=$?
    report_row "$run" "$start" "$status" "$dir" >>"$out_dir/churn.csv"
    # Keep only the failed runs' files (a 10-minute soak makes ~70 runs).
    if [ "$status" = 0 ]; then rm -rf "$dir" "$dir.stdout" "$dir.stderr"; fi
  done
}

# Flood room: one publisher asking for --flood-rate msg/s (as fast as TCP takes them: the
# server should stop reading it, not queue) and one subscriber; run in segments so a flooder
# the server closed (1008/1013) comes back. Exit 3 (invalid: send lag, closed connections) is
# the expected outcome of each segment and not judged.
flood_cmd_for() { # DURATION OUT_DIR
  flood_cmd=("${driver_prefix[@]}" "$loadgen_bin" run --url "$url_base/soak-flood"
    --subscribers 1 --publishers 1 --rate "$flood_rate" --size "$flood_size" --warmup 1
    --duration "$1" --drain 1 --max-send-lag 3600s --threads 1 --quiet --out "$2")
}
flood_driver() {
  driver_trap
  local run=0 status start left
  mkdir -p "$out_dir/flood"
  echo "$row_header" >"$out_dir/flood.csv"
  while :; do
    left=$(python3 -c "import time; print(int($deadline - time.time()))")
    [ "$left" -ge 10 ] || break
    run=$((run + 1))
    local seg=$((left - 4 < flood_segment ? left - 4 : flood_segment))
    local dir="$out_dir/flood/run-$run"
    flood_cmd_for "$seg" "$dir"
    start=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
    status=0
    run_bounded $((seg + 30)) "$dir" "${flood_cmd[@]}" || status=$?
    report_row "$run" "$start" "$status" "$dir" >>"$out_dir/flood.csv"
    rm -f "$dir/latency.hlog"  # per-second histograms of a flood: large and not looked at
  done
}

# ---------------------------------------------------------------- provenance
git_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo yes || echo no)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "invocation=$invocation"
  echo "git_commit=$git_commit"
  echo "git_dirty=$git_dirty"
  echo "ringcast_version=$("$ringcast_bin" --version 2>/dev/null || echo "ringcast $version")"
  echo "loadgen_version=$("$loadgen_bin" --version 2>/dev/null || echo unknown)"
  echo "rustc=$(rustc -V 2>/dev/null || echo unknown)"
  echo "kernel=$(uname -srm)"
  echo "cpu=$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cpus_online=$(nproc)"
  echo "memory=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "ulimit_n=$(ulimit -Sn)/$(ulimit -Hn)"
  echo "host=$host"
  echo "soak_s=$soak_s"
  echo "warmup_percent=$warmup_percent"
  echo "settle_s=$settle"
  echo "fd_tolerance=$fd_tolerance"
  echo "max_rss_slope=$max_rss_slope"
  echo "server_cpus=${server_cpus:-not pinned}"
  echo "driver_cpus=${driver_cpus:-not pinned}"
  echo "flood=$flood"
  echo "flood_rate=$flood_rate"
  echo "flood_size=$flood_size"
} >"$out_dir/meta.txt"
# A command line as run, with the binaries named by their place in the repo.
show() {
  local line
  line=$(printf '%q ' "$@")
  line=${line//"$ringcast_bin"/$ringcast_shown}
  echo "${line//"$loadgen_bin"/$loadgen_shown}"
}
{
  echo "# $invocation (binaries copied from target/release for the run)"
  echo "$(show "${server_cmd[@]}")&"
  echo "# healthy (one run for the whole soak):"
  show "${healthy_cmd[@]}"
  echo "# churn (repeated until the deadline; run-N in place of OUT):"
  churn_cmd_for OUT; show "${churn_cmd[@]}"
  if [ "$flood" = 1 ]; then
    echo "# flood (segments of up to ${flood_segment}s until the deadline; SECONDS and OUT vary):"
    flood_cmd_for SECONDS OUT; show "${flood_cmd[@]}"
  fi
  echo "# sampler:"
  echo "python3 scripts/soak_sample.py --pid SERVER_PID --port $port --t0 SERVER_START --out samples.csv"
} >"$out_dir/commands.txt"

# ---------------------------------------------------------------- the soak
echo "event,unix_s" >"$out_dir/events.csv"
t0=$(now)
echo "server_start,$t0" >>"$out_dir/events.csv"
"${server_cmd[@]}" >"$out_dir/server.log" 2>&1 &
server_pid=$!
waited=0
until port_listening "$port"; do
  kill -0 "$server_pid" 2>/dev/null || die "server exited before listening; see $out_dir/server.log"
  [ "$waited" -lt 100 ] || die "server not listening on $port after 10 s"
  sleep 0.1
  waited=$((waited + 1))
done
python3 "$scripts_dir/soak_sample.py" --pid "$server_pid" --port "$port" --t0 "$t0" \
  --out "$out_dir/samples.csv" &
sampler_pid=$!
log "server pid $server_pid on port $port; baseline for 5 s"
sleep 5
event drivers_start
deadline=$(python3 -c "import time; print(time.time() + $soak_s)")
healthy_driver &
driver_pids+=($!)
churn_driver &
driver_pids+=($!)
if [ "$flood" = 1 ]; then
  flood_driver &
  driver_pids+=($!)
fi
log "drivers running until $(date -u -d "@${deadline%.*}" +%H:%M:%S) UTC"
for pid in "${driver_pids[@]}"; do wait "$pid" || true; done
driver_pids=()
event drivers_end
log "drivers done; settling ${settle}s with no clients"
sleep "$settle"
event settle_end
sleep 1.5  # one more sample after settle_end
# Alive, not a zombie waiting to be reaped (kill -0 succeeds on those).
server_state=$(awk '/^State:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || true)
if [ -z "$server_state" ] || [ "$server_state" = Z ]; then
  server_status=0
  wait "$server_pid" || server_status=$?
  echo "server_exited_early,$(now)" >>"$out_dir/events.csv"
  log "the server exited during the soak (status $server_status); see $out_dir/server.log"
  server_pid=""
fi
curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" >"$out_dir/server-metrics-end.txt" 2>/dev/null ||
  rm -f "$out_dir/server-metrics-end.txt"
grep -E '^(VmHWM|VmRSS|Threads)' "/proc/$server_pid/status" >"$out_dir/server-status-end.txt" || true
kill -TERM "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
stop_process "$server_pid" 15
server_pid=""
event server_stopped
rmdir "$out_dir/churn" 2>/dev/null || true  # empty when every churn run passed

status=0
python3 "$scripts_dir/soak_report.py" "$out_dir" || status=$?
log "summary: $out_dir/summary.md"
exit "$status"
