#!/usr/bin/env bash
# The README's test command: every unit and integration test of the workspace.
#
# Usage: scripts/test.sh [cargo test arguments...]   (e.g. scripts/test.sh -p ringcast broker)
#
# The broker tests start real redis-server processes (on free ports, no persistence, stopped
# at the end of each test). Where `redis-server` is missing, this script installs Debian's
# `redis-server` package when it runs as root with apt-get (and stops the service the package
# starts: the tests start their own), or says what to install. RINGCAST_REDIS_SERVER may name
# another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${RINGCAST_REDIS_SERVER:-}" ]] && ! command -v redis-server >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "test.sh: installing redis-server (the broker tests run real ones)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        # The package starts a system Redis on 6379 where systemd runs; the tests need none.
        systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
    else
        echo "test.sh: redis-server not found; install it (apt-get install redis-server, dnf install redis, brew install redis) or set RINGCAST_REDIS_SERVER" >&2
        exit 2
    fi
fi

if [[ $# -eq 0 ]]; then
    set -- --workspace
fi
exec cargo test --locked "$@"
