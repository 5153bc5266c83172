#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs `mediafleet serve` on the embedded defaults
# (SQLite + a local directory under ./mediafleet-data, api on http://127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mediafleet-target}"
# Both binaries: `mediafleet` and `mediafleet-image`, the still-image child the workers run beside it.
cargo build --release --bin mediafleet --bin mediafleet-image
exec "$CARGO_TARGET_DIR/release/mediafleet" serve "$@"
