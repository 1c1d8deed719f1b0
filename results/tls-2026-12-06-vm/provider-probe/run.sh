#!/usr/bin/env bash
# ./run.sh [ROUNDS]: builds the probe and runs ring, aws-lc-rs and aws-lc-rs without the
# post-quantum group alternately, pinned to CPU 1,
# ROUNDS times each (default 3), with a throwaway certificate; one JSON line per run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$here/../../../scripts/tls-cert.sh" "$dir" >/dev/null
cargo build --release --manifest-path "$here/Cargo.toml" >&2
bin=${CARGO_TARGET_DIR:-$here/target}/release/tls-provider-probe
for _ in $(seq "$rounds"); do
    for provider in ring aws-lc-rs aws-lc-rs-x25519; do
        taskset -c 1 "$bin" "$provider" "$dir"
    done
done
