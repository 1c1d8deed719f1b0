# Sourced by scripts/bench.sh and scripts/conformance.sh: stop a server they started.
#
# stop_process PID SECONDS: SIGTERM (ringcast then closes its clients with 1001 and exits),
# wait up to SECONDS for it to go, then SIGKILL, and reap it. Safe on an empty or dead PID.
stop_process() {
  local pid=$1 limit_tenths=$(($2 * 10)) waited=0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$limit_tenths" ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
