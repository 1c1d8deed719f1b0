#!/usr/bin/env bash
# Drives the chat page (server/static/index.html) in jsdom with a real WebSocket against a
# release ringcast it starts on PORT: it joins with ?history=50, comes back by itself with
# ?since= after a dropped connection and shows each message once, and shows a "some messages
# may be missing" line after a reset. Installs jsdom and ws (pinned, package-lock.json) from npm
# into target/page-check the first time; needs node and npm (installed from Debian's packages
# where they are missing and this runs as root with apt-get).
# Usage: scripts/check-chat-page.sh [PORT]   (default 8096, below ip_local_port_range)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8096}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "check-chat-page.sh: installing nodejs and npm" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "check-chat-page.sh: needs node and npm (apt-get install nodejs npm)" >&2
    exit 2
  fi
fi
work=target/page-check
mkdir -p "$work"
cp server/tests/page/package.json server/tests/page/package-lock.json server/tests/page/check.js "$work/"
(cd "$work" && npm ci --silent --no-audit --no-fund >/dev/null)
cargo build --release --quiet --locked -p ringcast
timeout 120 node "$work/check.js" "$port" "$PWD/target/release/ringcast"
