#!/usr/bin/env bash
# Black-box TLS checks (issue 21), as a user would run them, against a real server on a free
# port with a throwaway CA (scripts/tls-cert.sh):
#   1. Python websockets over wss:// trusting the test CA: a message reaches both clients of a
#      room (sender included); TLS 1.2-only and TLS 1.3-only clients; ALPN http/1.1; a client
#      offering no ALPN is served, an h2-only one refused (rustls: no_application_protocol
#      alert); a client trusting another CA is refused.
#   2. openssl s_client -CAfile ca.pem -alpn http/1.1: Verify return code 0, GET / is the chat
#      page (200).
#   3. Bad input, each closed within a few seconds with the server still serving: plaintext
#      HTTP, a garbage ClientHello, a truncated one, a stalled handshake, no ClientHello, a
#      TLS 1.0 hello (and a TLS 1.0 client refused). ringcast: /proc/PID/fd,
#      ringcast_connections, process_open_fds, ringcast_queued_bytes back to baseline;
#      ringcast_tls_handshakes_total counted the failures.
#   4. Headless Chromium loads https://127.0.0.1:PORT/ trusting the leaf's SPKI
#      (--ignore-certificate-errors-spki-list; without it the load fails), the chat page's own
#      WebSocket is wss:// and round-trips a message with a Python client in the room.
#   5. ringcast: SIGHUP with a new pair (another CA) serves it on the next handshake while an
#      open connection keeps receiving; SIGHUP with a broken key keeps the last good pair;
#      ringcast_tls_cert_expiry_seconds is the served leaf's notAfter before and after.
#   6. ringcast: a missing key or a mismatched pair stops it at start with exit 2.
# The checks are in scripts/tls_check.py; each prints a PASS, FAIL or SKIP line.
#
#   scripts/check-tls.sh                 # release ringcast --tls-cert/--tls-key --header-timeout 2s
#   scripts/check-tls.sh --uws           # uWebSockets SSL (../shared/peers/uws/run.sh PORT ssl):
#                                        # ringcast-only checks (page, ALPN, metrics, reload) skipped
#   scripts/check-tls.sh --server CMD    # any server: CMD runs under bash with PORT, TLS_CERT,
#                                        # TLS_KEY, TLS_CA set; ringcast checks run when the process
#                                        # listening on PORT is a `ringcast` binary (or with
#                                        # --ringcast: a wrapper or stand-in with its interface)
#   options: --only wss,openssl,bad,chromium,reload,startup   --close-within SECONDS
#
# Installs what is missing: openssl and chromium with apt-get, Python websockets into
# TLS_CHECK_VENV (default target/tls-check-venv). Exit 0 when every check passed, 1 when one
# failed, 2 when the checks could not run (install, build, server start).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/stop-process.sh

die() { echo "check-tls: $*" >&2; exit 2; }

server=ringcast
server_cmd=""
only=""
close_within=""
force_ringcast=""
while [ $# -gt 0 ]; do
  case $1 in
    --uws) server=uws ;;
    --server) server=custom; server_cmd=${2:?--server takes a command}; shift ;;
    --ringcast) force_ringcast=1 ;;
    --only) only=${2:?--only takes a list}; shift ;;
    --close-within) close_within=${2:?--close-within takes seconds}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

apt_install() {
  if ! command -v apt-get >/dev/null || [ "$(id -u)" -ne 0 ]; then
    die "install $* (apt-get, as root)"
  fi
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  echo "check-tls: installing $*" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}
command -v openssl >/dev/null || apt_install openssl
command -v ss >/dev/null || apt_install iproute2
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || apt_install chromium

venv=${TLS_CHECK_VENV:-target/tls-check-venv}
if ! "$venv/bin/python" -c 'import websockets.asyncio.client' 2>/dev/null; then
  python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
  "$venv/bin/pip" install -q 'websockets>=13' || die "pip install websockets failed"
fi

scratch=$(mktemp -d)
server_pid=""
listener=""
# The listener too: a --server CMD that does not exec leaves bash as $server_pid.
trap 'stop_process "$listener" 5; stop_process "$server_pid" 5; rm -rf "$scratch"' EXIT
scripts/tls-cert.sh "$scratch/tls" >/dev/null || die "scripts/tls-cert.sh failed"

# A free port: bind 0, read it back (the kernel does not hand it out again at once).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PORT=$port TLS_CERT=$scratch/tls/cert.pem TLS_KEY=$scratch/tls/key.pem TLS_CA=$scratch/tls/ca.pem
case $server in
  ringcast)
    cargo build --release --quiet --locked -p ringcast || die "cargo build failed"
    target_dir=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    # --header-timeout 2s: the TLS handshake counts against it (issue 21); keeps this short.
    server_cmd="exec '$target_dir/release/ringcast' --listen 127.0.0.1:\$PORT --tls-cert \"\$TLS_CERT\" --tls-key \"\$TLS_KEY\" --header-timeout 2s"
    ;;
  uws)
    uws_run=${UWS_RUN:-../shared/peers/uws/run.sh}
    [ -x "$uws_run" ] || die "$uws_run not found (UWS_RUN=path/to/peers/uws/run.sh)"
    uws_run=$(cd "$(dirname "$uws_run")" && pwd)/$(basename "$uws_run")
    server_cmd="UWS_CERT_FILE=\"\$TLS_CERT\" UWS_KEY_FILE=\"\$TLS_KEY\" exec '$uws_run' \$PORT ssl"
    ;;
esac
echo "check-tls: starting: $server_cmd (PORT=$port)"
bash -c "$server_cmd" >"$scratch/server.log" 2>&1 &
server_pid=$!
# Up to 60 s: uWebSockets builds itself on first use (about 15 s).
for _ in $(seq 600); do
  listener=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)
  [ -n "$listener" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$scratch/server.log" >&2; die "the server exited before listening"; }
  sleep 0.1
done
[ -n "$listener" ] || { cat "$scratch/server.log" >&2; die "nothing listens on $port after 60 s"; }
exe=$(readlink "/proc/$listener/exe" || true)
args=(--port "$port" --dir "$scratch/tls" --pid "$listener")
if [ "$(basename "$exe")" = ringcast ]; then
  args+=(--ringcast --binary "$exe")
  echo "check-tls: ringcast (pid $listener, $exe) on 127.0.0.1:$port"
elif [ -n "$force_ringcast" ]; then
  args+=(--ringcast)
  echo "check-tls: $exe (pid $listener) on 127.0.0.1:$port, checked as ringcast (--ringcast)"
else
  # uWebSockets closes a stalled handshake at its 10 s HTTP idle timeout.
  : "${close_within:=15}"
  echo "check-tls: $exe (pid $listener) on 127.0.0.1:$port: ringcast-only checks skipped or relaxed"
fi
[ -n "$only" ] && args+=(--only "$only")
[ -n "$close_within" ] && args+=(--close-within "$close_within")
status=0
# TMPDIR: its scratch files (Chromium profiles, second pairs) go with $scratch.
TMPDIR=$scratch "$venv/bin/python" scripts/tls_check.py "${args[@]}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "check-tls: FAILED; server log (last 20 lines):" >&2
  tail -n 20 "$scratch/server.log" >&2
fi
exit "$status"
