#!/usr/bin/env bash
# Run the benchmark scenario matrix against ringcast (or another server) with loadgen and record
# every run under results/<version>-<date>-<host>/ with a README of provenance, a summary table
# and an HTML page of plots. `scripts/bench.sh` with no flags is the command that produces a
# recorded baseline; see results/README.md for the layout and how to compare two result dirs.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [options]

Runs each scenario of the matrix --repeat times. For each run: start a fresh server pinned to
--server-cpus, wait for its port, run loadgen pinned to --loadgen-cpus with --server-pid (server
CPU seconds and RSS are sampled from /proc), stop the server with SIGTERM, keep all outputs.

Options:
  --scenarios a,b     only these scenarios (default: all). Matrix:
                      fanout-1k fanout-1k-half fanout-1k-20 fanout-5k fanout-15k peak-1k peak-4m chat
                      fanin-5k
                      json-1k deflate-1k idle-10k-deflate
                      large storm slow-consumer idle-10k
  --repeat N          runs per scenario (default 3)
  --quick             short durations and small counts, to try the script; never for recorded
                      results (output goes to /tmp/ringcast-bench/ unless --out is given)
  --target CMD        start this server instead of ringcast; "{port}" in CMD is replaced by the
                      port, else the port is appended. The started PID must be the server's PID
                      (e.g. ../shared/peers/go-gorilla/run.sh, which execs the server)
  --target-rooms      the target serves rooms under /ws/<name> (else the chat scenario, which
                      needs 100 rooms, is skipped for a --target)
  --label NAME        first part of the result dir name (default: ringcast's version, or the
                      target's directory name)
  --out DIR           result directory (default results/<label>-<date>-<host>)
  --port N            server port (default 8090; keep it below ip_local_port_range)
  --server-cpus LIST  taskset CPU list for the server (default 1)
  --server-cores N    ringcast --cores (default: number of CPUs in --server-cpus)
  --server-args ARGS  extra arguments for ringcast (word-split)
  --loadgen-cpus LIST taskset CPU list for loadgen (default 0)
  --src RANGE         loadgen source address pool (default 127.0.0.1-127.0.0.8)
  --tls               wss:// throughout: makes a throwaway CA and server certificate for this
                      invocation (scripts/tls-cert.sh, in a temporary directory removed at the
                      end), starts ringcast with --tls-cert/--tls-key, exports UWS_CERT_FILE and
                      UWS_KEY_FILE for a --target (../shared/peers/uws/run.sh {port} ssl) and
                      runs loadgen on wss:// with --tls-ca; the default label gets "-tls"
  --no-build          use the existing release binaries
  -h, --help          this text
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
scripts_dir="$repo_root/scripts"
# shellcheck source=stop-process.sh
. "$scripts_dir/stop-process.sh"
invocation="scripts/bench.sh${*:+ $*}"

all_scenarios=(fanout-1k fanout-1k-half fanout-1k-20 fanout-5k fanout-15k peak-1k peak-4m chat fanin-5k
  large storm slow-consumer idle-10k json-1k deflate-1k idle-10k-deflate)
selected_scenarios=("${all_scenarios[@]}")
repeat=3
quick=0
target_cmd=""
target_rooms=0
label=""
out_dir=""
port=8090
server_cpus=1
server_cores=""
server_args=""
loadgen_cpus=0
src_pool="127.0.0.1-127.0.0.8"
build=1
tls=0

die() { echo "bench.sh: $*" >&2; exit 2; }
log() { echo "bench.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) IFS=, read -r -a selected_scenarios <<<"${2:?--scenarios needs a list}"; shift 2 ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --quick) quick=1; shift ;;
    --target) target_cmd=${2:?--target needs a command}; shift 2 ;;
    --target-rooms) target_rooms=1; shift ;;
    --label) label=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --server-cpus) server_cpus=${2:?}; shift 2 ;;
    --server-cores) server_cores=${2:?}; shift 2 ;;
    --server-args) server_args=${2?}; shift 2 ;;
    --loadgen-cpus) loadgen_cpus=${2:?}; shift 2 ;;
    --src) src_pool=${2:?}; shift 2 ;;
    --tls) tls=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

[[ $repeat =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive integer, got '$repeat'"
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -lt 65536 ] || die "--port must be a port number"
for scenario in "${selected_scenarios[@]}"; do
  [[ " ${all_scenarios[*]} " == *" $scenario "* ]] ||
    die "unknown scenario '$scenario' (known: ${all_scenarios[*]})"
done

# Number of CPUs in a taskset list such as "0", "2-3" or "0,2-3".
cpu_count() {
  local total=0 part
  IFS=, read -r -a parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      total=$((total + BASH_REMATCH[2] - BASH_REMATCH[1] + 1))
    elif [[ $part =~ ^[0-9]+$ ]]; then
      total=$((total + 1))
    else
      die "bad CPU list '$1'"
    fi
  done
  echo "$total"
}
server_cores=${server_cores:-$(cpu_count "$server_cpus")}
loadgen_threads=$(cpu_count "$loadgen_cpus")

# The ephemeral range is where loadgen's client ports come from; a server port inside it can
# collide with them (and the kernel may hand a client the port a restarted server wants).
read -r ephemeral_low _ </proc/sys/net/ipv4/ip_local_port_range
[ "$port" -lt "$ephemeral_low" ] ||
  die "--port $port is inside net.ipv4.ip_local_port_range (starts at $ephemeral_low)"

# ---------------------------------------------------------------- build and binaries
cd "$repo_root"
if [ "$build" = 1 ]; then
  packages=(-p loadgen)
  [ -z "$target_cmd" ] && packages+=(-p ringcast)
  log "building release binaries (${packages[*]})"
  cargo build --release --quiet "${packages[@]}"
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
ringcast_bin="$target_dir/release/ringcast"
loadgen_bin="$target_dir/release/loadgen"
[ -x "$loadgen_bin" ] || die "no loadgen binary at $loadgen_bin (drop --no-build?)"
if [ -z "$target_cmd" ]; then
  [ -x "$ringcast_bin" ] || die "no ringcast binary at $ringcast_bin (drop --no-build?)"
fi

# ---------------------------------------------------------------- result directory
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
if [ -z "$label" ]; then
  if [ -n "$target_cmd" ]; then
    read -r -a target_words <<<"$target_cmd"
    label=$(basename "$(dirname "${target_words[0]}")")
  else
    label=$version
  fi
  [ "$tls" = 1 ] && label=$label-tls
fi
git_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git_dirty=$([ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo yes || echo no)
stamp=$(date +%Y-%m-%d)
host=$(hostname -s 2>/dev/null || hostname)
if [ -z "$out_dir" ]; then
  if [ "$quick" = 1 ]; then
    out_dir="${TMPDIR:-/tmp}/ringcast-bench/quick-$label-$stamp-$host"
  else
    out_dir="results/$label-$stamp-$host"
  fi
  # Never mix two sessions' runs in one directory: number later ones.
  base=$out_dir n=2
  while [ -e "$out_dir" ]; do out_dir="$base.$n"; n=$((n + 1)); done
fi
mkdir -p "$out_dir"

# ---------------------------------------------------------------- TLS
# One certificate for the whole invocation, outside the result directory: its CA key must never
# be recorded. ringcast gets it as options, a --target through the environment (uWebSockets'
# run.sh ssl reads UWS_CERT_FILE and UWS_KEY_FILE), loadgen trusts its CA and nothing else.
scheme=ws http_scheme=http
tls_dir=""
loadgen_tls=()
ringcast_tls=()
curl_tls=()
if [ "$tls" = 1 ]; then
  tls_dir=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-bench-tls.XXXXXX")
  "$scripts_dir/tls-cert.sh" "$tls_dir" >&2
  export UWS_CERT_FILE=$tls_dir/cert.pem UWS_KEY_FILE=$tls_dir/key.pem
  scheme=wss http_scheme=https
  curl_tls=(--cacert "$tls_dir/ca.pem")
  loadgen_tls=(--tls-ca "$tls_dir/ca.pem")
  ringcast_tls=(--tls-cert "$tls_dir/cert.pem" --tls-key "$tls_dir/key.pem")
fi

# ---------------------------------------------------------------- scenario matrix
if [ "$quick" = 1 ]; then
  warmup=1 duration=3 drain=1
else
  warmup=5 duration=15 drain=2
fi
# full_or_quick FULL QUICK: the count for this mode.
full_or_quick() { if [ "$quick" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# Sets scenario_args (loadgen options) and scenario_needs_rooms for scenario $1.
# Rates keep every scenario but peak-1k near or below ~100k deliveries/s: with one core for loadgen, that
# is what the receiving side can take without becoming the bottleneck (results/README.md, "The
# scenarios").
scenario_config() {
  # Connection scenarios measure connect times and memory, not a message window: keep them short.
  local run_warmup=$warmup run_duration=$duration
  if [ "$quick" = 0 ] && [[ $1 == storm || $1 == idle-10k ]]; then
    run_warmup=1 run_duration=5
  fi
  scenario_needs_rooms=0
  case "$1" in
    fanout-1k) # the issue-2 / peers reference point: 1000 x 100 msg/s = 100k deliveries/s
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1 --rate 100 --size 64
        --connect-rate 5000) ;;
    fanout-1k-half) # half that rate, 50k deliveries/s: latency when neither core is saturated
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1 --rate 50 --size 64
        --connect-rate 5000) ;;
    fanout-1k-20) # 1000 x 20 msg/s = 20k deliveries/s: every delivery its own send (issue 11)
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1 --rate 20 --size 64
        --connect-rate 5000) ;;
    fanout-5k) # 5000 x 20 msg/s = 100k deliveries/s (issue-2 reference point)
      scenario_args=(--subscribers "$(full_or_quick 5000 300)" --publishers 1 --rate 20 --size 64
        --connect-rate 5000) ;;
    fanout-15k) # 15000 x 5 msg/s = 75k deliveries/s
      scenario_args=(--subscribers "$(full_or_quick 15000 1000)" --publishers 1 --rate 5 --size 64
        --connect-rate 5000) ;;
    peak-1k) # 1000 x 1000 msg/s = 1M deliveries/s: queues build up, so each writev carries many
      # frames; shows the batched peak and that loadgen is not what limits it (its own CPU)
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1
        --rate "$(full_or_quick 1000 200)" --size 64 --connect-rate 5000) ;;
    chat) # 100 rooms x 50 clients, every client publishes: 5000 x 0.2 msg/s x 50 = 50k/s
      # (quick: 1 msg/s, so the short window holds several messages of every publisher)
      scenario_needs_rooms=1
      scenario_args=(--subscribers 0 --publishers "$(full_or_quick 5000 500)"
        --rooms "$(full_or_quick 100 10)" --rate "$(full_or_quick 0.2 1)" --size 64
        --connect-rate 5000) ;;
    fanin-5k) # 5000 rooms of one client, each publishing 2 msg/s to itself: as many reads as
      # deliveries (10k/s each; at 10 msg/s loadgen's one thread was the limit), the read
      # path's share at its largest (issue 22)
      scenario_needs_rooms=1
      scenario_args=(--subscribers 0 --publishers "$(full_or_quick 5000 500)"
        --rooms "$(full_or_quick 5000 500)" --rate 2 --size 64 --connect-rate 5000) ;;
    large) # 16 KiB payloads: 100 x 100 msg/s = 10k deliveries/s, ~164 MB/s
      scenario_args=(--subscribers "$(full_or_quick 100 20)" --publishers 1 --rate 100
        --size 16KiB --connect-rate 5000) ;;
    storm) # connect as fast as possible; the connect-time percentiles are the result
      scenario_args=(--subscribers "$(full_or_quick 15000 1000)" --publishers 1 --rate 1 --size 64
        --connect-rate 0) ;;
    slow-consumer) # 5% stop reading after the warm-up. 16 KiB x 50/s = 800 KB/s each: enough
      # to fill loopback socket buffers (several MB) and the 1 MiB --max-backlog within seconds,
      # so the server's slow-consumer close happens inside the measured window.
      scenario_args=(--subscribers "$(full_or_quick 200 40)" --publishers 1 --rate 50
        --size 16KiB --stalled 5 --connect-rate 5000) ;;
    peak-4m) # 1000 x 4000 msg/s = 4M deliveries/s: writes coalesce (issue 11: all delivered,
      # p99 under 50 ms)
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1
        --rate "$(full_or_quick 4000 400)" --size 64 --connect-rate 5000) ;;
    json-1k) # issue 20's reference without compression: 1000 x 20 msg/s of 1 KiB chat JSON
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1 --rate 20
        --size 1KiB --payload json --connect-rate 5000) ;;
    deflate-1k) # the same, every connection offering permessage-deflate (issue 20)
      scenario_args=(--subscribers "$(full_or_quick 1000 100)" --publishers 1 --rate 20
        --size 1KiB --payload json --deflate --connect-rate 5000) ;;
    idle-10k-deflate) # idle-10k, every connection negotiating permessage-deflate: memory per
      # connection against plain ones (issue 20: no per-connection compressor state)
      scenario_args=(--subscribers "$(full_or_quick 10000 1000)" --publishers 0 --rate 1 --size 64
        --deflate --connect-rate 5000) ;;
    idle-10k) # mostly idle connections: memory per connection
      scenario_args=(--subscribers "$(full_or_quick 10000 1000)" --publishers 0 --rate 1 --size 64
        --connect-rate 5000) ;;
  esac
  scenario_args+=(--warmup "$run_warmup" --duration "$run_duration" --drain "$drain"
    --src "$src_pool" --threads "$loadgen_threads")
}

# ---------------------------------------------------------------- server lifecycle
server_pid=""

port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# Starts the server for run dir $1 in the background; sets server_pid and server_cmd.
start_server() {
  local run_dir=$1
  port_listening "$port" && die "port $port is already in use; pick another with --port"
  if [ -n "$target_cmd" ]; then
    local expanded=${target_cmd//\{port\}/$port}
    [ "$expanded" = "$target_cmd" ] && expanded="$target_cmd $port"
    read -r -a server_cmd <<<"$expanded"
  else
    local extra=()
    read -r -a extra <<<"$server_args"
    server_cmd=("$ringcast_bin" --listen "127.0.0.1:$port" --cores "$server_cores"
      "${ringcast_tls[@]}" "${extra[@]}")
  fi
  server_cmd=(taskset -c "$server_cpus" "${server_cmd[@]}")
  # taskset and run.sh both exec, so $! is the server process itself.
  "${server_cmd[@]}" >"$run_dir/server.log" 2>&1 &
  server_pid=$!
  # Generous: a peer's run.sh compiles the peer on first use.
  local waited=0
  until port_listening "$port"; do
    kill -0 "$server_pid" 2>/dev/null || die "server exited before listening; see $run_dir/server.log"
    [ "$waited" -lt 1200 ] || die "server not listening on $port after 120 s; see $run_dir/server.log"
    sleep 0.1
    waited=$((waited + 1))
  done
}

# The server's whole-life CPU seconds and peak RSS, sampled just before it is stopped.
record_server_proc() {
  local run_dir=$1 ticks fields
  ticks=$(getconf CLK_TCK)
  fields=$(sed 's/.*) //' "/proc/$server_pid/stat") || return 0
  read -r -a stat <<<"$fields"
  # After "pid (comm) ", utime and stime are the 12th and 13th fields.
  {
    echo "cpu_seconds_total=$(python3 -c "print(($((stat[11] + stat[12]))) / $ticks)")"
    echo "cpu_user_seconds_total=$(python3 -c "print(${stat[11]} / $ticks)")"
    echo "cpu_system_seconds_total=$(python3 -c "print(${stat[12]} / $ticks)")"
    grep -E '^(VmHWM|VmRSS|Threads)' "/proc/$server_pid/status" | tr -d ' \t' | tr ':' '='
  } >"$run_dir/server-proc.txt"
}

stop_server() {
  stop_process "$server_pid" 15
  server_pid=""
}
# Stops the server and removes the throwaway certificate (--tls).
clean_up() {
  stop_server
  [ -z "$tls_dir" ] || rm -rf "$tls_dir"
}
trap clean_up EXIT
trap 'clean_up; exit 130' INT TERM

# ---------------------------------------------------------------- provenance
sysctl_value() { tr -s ' \t' ' ' <"/proc/sys/$1" 2>/dev/null || echo "n/a"; }
{
  echo "# Benchmark results: $label, $stamp, $host"
  echo
  [ "$quick" = 1 ] && echo "**Quick run (--quick): short and small, not a recorded result.**" && echo
  echo "Produced by \`$invocation\` (scripts/bench.sh; see results/README.md to reproduce and compare)."
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
  echo "| git commit | $git_commit (uncommitted changes: $git_dirty) |"
  echo "| server | ${target_cmd:-ringcast $version (--cores $server_cores ${server_args})} |"
  echo "| server CPUs (taskset) | $server_cpus |"
  echo "| loadgen CPUs (taskset) | $loadgen_cpus (--threads $loadgen_threads) |"
  echo "| TLS | $([ "$tls" = 1 ] && echo "on (--tls): wss://, a throwaway CA and ECDSA P-256 certificate (scripts/tls-cert.sh), loadgen --tls-ca" || echo off) |"
  echo "| loadgen | $("$loadgen_bin" --version 2>/dev/null || echo unknown) |"
  echo "| rustc | $(rustc -V 2>/dev/null || echo unknown) |"
  echo "| kernel | $(uname -srm) |"
  echo "| CPU | $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') |"
  echo "| CPUs online | $(nproc) |"
  echo "| memory | $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
  echo "| ulimit -n (soft/hard) | $(ulimit -Sn)/$(ulimit -Hn) |"
  for key in net/core/somaxconn net/ipv4/ip_local_port_range net/ipv4/tcp_mem \
    net/ipv4/tcp_rmem net/ipv4/tcp_wmem net/ipv4/tcp_max_syn_backlog kernel/io_uring_disabled; do
    echo "| ${key//\//.} | $(sysctl_value "$key") |"
  done
  echo "| repetitions | $repeat; warm-up ${warmup}s, measured ${duration}s, drain ${drain}s (see matrix.txt) |"
  echo
  echo "The scenario matrix (loadgen options) is in \`matrix.txt\`; every run's exact commands"
  echo "are in \`<scenario>/run-<i>/commands.txt\`."
  echo
} >"$out_dir/README.md"

# ---------------------------------------------------------------- the runs
log "writing $out_dir"
# The matrix as run (its order is the order of the summary table and the plot page).
for scenario in "${selected_scenarios[@]}"; do
  scenario_config "$scenario"
  echo "$scenario: ${scenario_args[*]}"
done >"$out_dir/matrix.txt"
declare -a skipped=()
for scenario in "${selected_scenarios[@]}"; do
  scenario_config "$scenario"
  if [ "$scenario_needs_rooms" = 1 ] && [ -n "$target_cmd" ] && [ "$target_rooms" = 0 ]; then
    skipped+=("$scenario (needs rooms; pass --target-rooms if the target has them)")
    log "skipping $scenario: the target has a single room"
    continue
  fi
  url_path=/ws/bench
  [ -n "$target_cmd" ] && [ "$target_rooms" = 0 ] && url_path=/ws
  for i in $(seq 1 "$repeat"); do
    run_dir="$out_dir/$scenario/run-$i"
    mkdir -p "$run_dir"
    start_server "$run_dir"
    loadgen_cmd=(taskset -c "$loadgen_cpus" "$loadgen_bin" run --url "$scheme://127.0.0.1:$port$url_path"
      "${loadgen_tls[@]}" "${scenario_args[@]}" --server-pid "$server_pid"
      --out "$run_dir")
    printf '%q ' "${server_cmd[@]}" >"$run_dir/commands.txt"
    printf '&\n' >>"$run_dir/commands.txt"
    printf '%q ' "${loadgen_cmd[@]}" >>"$run_dir/commands.txt"
    echo >>"$run_dir/commands.txt"
    log "$scenario run $i/$repeat: ${scenario_args[*]}"
    # Bounded even if loadgen hangs: connect budget + warm-up + measured + drain + slack.
    limit=$((60 + warmup + duration + drain))
    status=0
    timeout --kill-after=10 "$limit" "${loadgen_cmd[@]}" >"$run_dir/loadgen.stdout" \
      2>"$run_dir/loadgen.stderr" || status=$?
    echo "$status" >"$run_dir/exit-code"
    record_server_proc "$run_dir"
    # ringcast's own counters (frames per writev = frames_written / writev_calls); a --target
    # may have no /metrics, which is fine.
    curl -fsS --max-time 5 "${curl_tls[@]}" "$http_scheme://127.0.0.1:$port/metrics" \
      >"$run_dir/server-metrics.txt" 2>/dev/null ||
      rm -f "$run_dir/server-metrics.txt"
    stop_server
    case "$status" in
      0) ;;
      2) die "loadgen rejected the options (exit 2): $(tail -n 3 "$run_dir/loadgen.stderr")" ;;
      3) log "  run flagged invalid (exit 3): see $run_dir/loadgen.stdout" ;;
      124|137) log "  loadgen timed out after ${limit}s" ;;
      *) log "  loadgen exited $status: see $run_dir/loadgen.stderr" ;;
    esac
    grep -E '^(throughput|wire|latency  |connect time|  TLS handshake|run:)' "$run_dir/loadgen.stdout" | sed 's/^/    /' >&2 || true
  done
done

# ---------------------------------------------------------------- summary and picture
{
  echo "## Summary"
  echo
  python3 "$scripts_dir/bench_summary.py" "$out_dir" || echo "(summary failed: no reports)"
  if [ ${#skipped[@]} -gt 0 ]; then
    echo
    echo "Skipped: ${skipped[*]}"
  fi
  echo
  echo "Plots (latency percentile spectrum, per-second timeline): [index.html](index.html)."
} >>"$out_dir/README.md"
python3 "$scripts_dir/plot.py" "$out_dir" -o "$out_dir/index.html" ||
  log "plot.py failed; the runs are still recorded"
log "done: $out_dir/README.md"
