#!/usr/bin/env bash
# Side-by-side benchmark: runs the same scenarios against two or more servers in alternation
# (A, B, A, B, ...), one bench.sh run per server per round, so that the drift of a noisy machine
# (~30% between batches here) hits every server alike. Compare the result directories with
# `loadgen compare DIR/A DIR/B` (runs are matched by scenario name).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench-alternate.sh [options] NAME=SERVER [NAME=SERVER ...]
  SERVER is "ringcast" (this repo's release build, with --server-args for its options),
  "ringcast ARGS" (the same with ARGS added, e.g. "ringcast --io epoll" to compare backends) or
  a command that starts another server ("{port}" replaced by the port, as bench.sh --target);
  "tls SERVER" runs that one over TLS as --tls does (e.g. plain=ringcast "tls=tls ringcast"
  measures what TLS costs in one batch).
Options:
  --scenarios a,b   bench.sh scenarios (default fanout-5k)
  --rounds N        runs per server (default 3)
  --out DIR         results go to DIR/NAME/SCENARIO/run-R, each round's README under
                    DIR/NAME/provenance/round-R (default results/alternate-<date>-<host>)
  --server-args A   extra ringcast arguments (word-split), for SERVER=ringcast
  --quick           bench.sh --quick (to try the script; never for recorded results)
  --tls             bench.sh --tls for every server: wss://, a throwaway CA and certificate per
                    bench.sh run, ringcast given --tls-cert/--tls-key, another server
                    UWS_CERT_FILE/UWS_KEY_FILE (uWebSockets: run.sh {port} ssl)
Example:
  scripts/bench-alternate.sh --scenarios fanout-5k,fanout-1k \
    ringcast=ringcast uws=../shared/peers/uws/run.sh
  scripts/bench-alternate.sh --tls --scenarios fanout-5k,storm \
    ringcast=ringcast "uws-ssl=../shared/peers/uws/run.sh {port} ssl"
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
scenarios=fanout-5k rounds=3 out_dir="" server_args="" quick=() tls=()
contenders=()
while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) scenarios=${2:?}; shift 2 ;;
    --rounds) rounds=${2:?}; shift 2 ;;
    --out) out_dir=${2:?}; shift 2 ;;
    --server-args) server_args=${2?}; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --tls) tls=(--tls); shift ;;
    -h|--help) usage; exit 0 ;;
    *=*) contenders+=("$1"); shift ;;
    *) usage >&2; echo "bench-alternate.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ ${#contenders[@]} -ge 1 ] || { usage >&2; exit 2; }
for contender in "${contenders[@]}"; do
  # NAME is a directory name: "tls ringcast=ringcast" would run plain ringcast under "tls ringcast".
  [[ ${contender%%=*} =~ ^[A-Za-z0-9._-]+$ ]] || {
    echo "bench-alternate.sh: NAME '${contender%%=*}' in '$contender' must be letters, digits, . _ -" \
      "(over TLS: NAME=\"tls SERVER\", e.g. \"tls=tls ringcast\")" >&2
    exit 2
  }
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-alternate.sh: --rounds must be a positive integer" >&2; exit 2; }
host=$(hostname -s 2>/dev/null || hostname)
out_dir=${out_dir:-$repo_root/results/alternate-$(date +%Y-%m-%d)-$host}
mkdir -p "$out_dir"

cd "$repo_root"
cargo build --release --quiet --locked -p ringcast -p loadgen

for round in $(seq 1 "$rounds"); do
  for contender in "${contenders[@]}"; do
    name=${contender%%=*} server=${contender#*=} server_tls=("${tls[@]}")
    # "tls SERVER": this contender over TLS (ringcast with and without TLS in one batch).
    if [[ $server == "tls "* ]]; then
      server=${server#tls } server_tls=(--tls)
    fi
    args=(--scenarios "$scenarios" --repeat 1 --no-build --label "$name"
      --out "$out_dir/$name/round-$round" "${quick[@]}" "${server_tls[@]}")
    if [ "$server" = ringcast ] || [[ $server == "ringcast "* ]]; then
      args+=(--server-args "$server_args${server#ringcast}")
    else
      args+=(--target "$server" --target-rooms)
    fi
    echo "bench-alternate.sh: round $round/$rounds: $name" >&2
    "$repo_root/scripts/bench.sh" "${args[@]}"
  done
done
# shellcheck source=rounds.sh
. "$repo_root/scripts/rounds.sh"
for contender in "${contenders[@]}"; do
  regroup_rounds "$out_dir" "${contender%%=*}"
done
{
  echo "# Alternating runs: ${contenders[*]}"
  echo
  quoted=$(printf "'%s' " "${contenders[@]}")
  # shellcheck disable=SC2016 # $server_args is expanded; the single quotes are text
  echo "Produced by \`scripts/bench-alternate.sh ${tls[*]+${tls[*]} }--scenarios $scenarios --rounds $rounds${server_args:+ --server-args '$server_args'} ${quoted% }\`;"
  echo "each round ran every server once, in this order. Runs: \`NAME/SCENARIO/run-R\`; each"
  echo "round's provenance: \`NAME/provenance/round-R/README.md\`; medians: \`NAME/summary.md\`."
  echo
  echo "Compare: \`loadgen compare DIR/${contenders[0]%%=*} DIR/NAME\`."
} >"$out_dir/README.md"
echo "bench-alternate.sh: done: $out_dir" >&2
