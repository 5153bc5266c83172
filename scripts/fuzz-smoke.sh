#!/usr/bin/env bash
# Fuzz smoke: builds the cargo-fuzz crate in fuzz/ (nightly, libFuzzer) and runs every target for a short,
# bounded time over its committed seeds (fuzz/seeds/<target>/) and past crashes (fuzz/regressions/<target>/);
# fails if any target crashes, panics, times out or runs out of memory. docs/fuzzing.md has the long runs.
#
#   FUZZ_SECONDS    seconds per target (default 20, at most 60)
#   FUZZ_TARGETS    space-separated subset (default: all of them)
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer (default none; address works too, at about half the speed)
#   FUZZ_REQUIRED   1: a machine without the nightly toolchain fails instead of skipping
set -euo pipefail
cd "$(dirname "$0")/.."
# Outside the clone, so fresh clones on one machine share the fuzz build (it is not the test build: nightly,
# coverage-instrumented, release).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/mediafleet-fuzz-target}"
seconds="${FUZZ_SECONDS:-20}"
if [ "$seconds" -gt 60 ]; then seconds=60; fi
sanitizer="${FUZZ_SANITIZER:-none}"
targets="${FUZZ_TARGETS:-envelope sniff signed_url upload_form still_image probe}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
    echo "fuzz-smoke: no nightly toolchain (cargo-fuzz needs it)" >&2
    exit 1
  fi
  echo "fuzz-smoke: SKIPPED — no nightly toolchain on this machine (cargo-fuzz needs it)" >&2
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cargo +nightly fuzz build --sanitizer "$sanitizer"
failed=()
for t in $targets; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  dirs=("$corpus" "fuzz/seeds/$t")
  if [ -d "fuzz/regressions/$t" ]; then dirs+=("fuzz/regressions/$t"); fi
  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
  if [ -f "fuzz/dicts/$t.dict" ]; then args+=(-dict="fuzz/dicts/$t.dict"); fi
  echo "fuzz-smoke: $t for ${seconds}s" >&2
  if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- "${args[@]}"; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; see docs/fuzzing.md)" >&2
  exit 1
fi
echo "fuzz-smoke: $(echo $targets | wc -w) targets ran ${seconds}s each without a crash" >&2
