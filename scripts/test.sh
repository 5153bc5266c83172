#!/usr/bin/env bash
# README command 2: installs what is missing, starts the services, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --services
bash scripts/services.sh
# Build outside the clone, so fresh clones on one machine share compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mediafleet-target}"
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
