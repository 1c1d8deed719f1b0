#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time and fails on a crash.
#   scripts/fuzz.sh [seconds-per-target]      (default 60)
#   FUZZ_TARGETS="client_frames" scripts/fuzz.sh 300    # only some targets
#
# Works on the stable toolchain: cargo-fuzz needs -Z flags (sanitizer, coverage passes), which
# RUSTC_BOOTSTRAP=1 unlocks on stable; no nightly is used. Installs cargo-fuzz if missing.
# The committed seeds (fuzz/corpus/<target>/seed-*) are read only: libFuzzer writes the inputs
# it finds into a temporary first corpus directory, so a run leaves the tree clean. A crash is
# saved under fuzz/artifacts/<target>/ and its path printed; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> fuzz/artifacts/<target>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets="${FUZZ_TARGETS:-client_frames http_upgrade tls_upgrade}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

# fuzz/ is its own workspace with its own Cargo.lock; cargo fuzz has no --locked, so check the
# lock file first (fails if Cargo.toml and Cargo.lock disagree).
cargo fetch --locked --manifest-path fuzz/Cargo.toml

# -a: debug assertions and overflow checks on, as in the test profile.
fuzz_flags=(-a --fuzz-dir fuzz)
cargo fuzz build "${fuzz_flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in $targets; do
    printf '\n--- fuzz %s for %ss\n' "$target" "$seconds"
    # cargo fuzz saves crashes in fuzz/artifacts/<target>/.
    mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
    stamp="$scratch/$target.start"
    touch "$stamp"
    extra=()
    if [[ $target == http_upgrade || $target == tls_upgrade ]]; then
        # LeakSanitizer's per-input check stops the server's threads too and costs these targets
        # most of their speed (about 7x); they check for leaked connections and sockets themselves.
        extra+=(-detect_leaks=0)
    fi
    if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        ${extra[@]+"${extra[@]}"}; then
        failed+=("$target")
        echo "fuzz target $target FAILED; inputs saved:" >&2
        find "fuzz/artifacts/$target" -type f -newer "$stamp" -print >&2
    fi
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: no crash in ${seconds}s per target ($targets)"
