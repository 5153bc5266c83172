#!/usr/bin/env bash
# README command 2: installs what is missing, starts the services, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --services
bash scripts/services.sh
# Build outside the clone, so fresh clones on one machine share compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mediafleet-target}"
# Each clone links its own test binaries (hundreds of MB each with debug info) into the shared cache; keep only
# the newest build of each, so repeated CI runs on one machine do not fill its disk.
prune_stale_test_binaries() {
  local deps="$CARGO_TARGET_DIR/debug/deps"
  [ -d "$deps" ] || return 0
  find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %f\n' | sort -rn |
    awk '{ n = $2; sub(/-[0-9a-f]+$/, "", n); if (seen[n]++) print $2 }' |
    while read -r f; do rm -f "$deps/$f"; done
}
prune_stale_test_binaries
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The same feature set as the test run below (workspace members and dev-dependencies unified), so nothing is
# compiled twice; both binaries must exist because tests spawn them.
cargo build --workspace --bins --tests
cargo nextest run --workspace --no-fail-fast "$@"
# Fuzz smoke (docs/fuzzing.md): every cargo-fuzz target for FUZZ_SECONDS (default 20 s) over its seeds, with
# nightly and its own target dir; FUZZ_SMOKE=0 leaves it out.
if [ "${FUZZ_SMOKE:-1}" != 0 ]; then
  bash scripts/fuzz-smoke.sh
fi
