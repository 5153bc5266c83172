#!/usr/bin/env bash
# Fuzzes the HTTP api with schemathesis against its own GET /openapi.json: every operation, generated valid
# and invalid requests, all checks (no 5xx, responses match the documented status codes, content types and
# schemas). Runs a `mediafleet serve` on the embedded backends in a temp data dir on 127.0.0.1, seeded with
# two uploads so list and media answers carry real media objects. Bounded by FUZZ_MAX_TIME seconds (default
# 120). Not part of the test suite. Extra arguments go to `schemathesis run` (e.g. --seed 1, -n 50).
#
#   bash scripts/fuzz-api.sh            # exit 0 when schemathesis found nothing
#   FUZZ_MAX_TIME=600 bash scripts/fuzz-api.sh --seed 7
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${MEDIAFLEET_VENV:-$HOME/.cache/mediafleet/venv}"
MAX_TIME="${FUZZ_MAX_TIME:-120}"
PORT="${FUZZ_PORT:-18480}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mediafleet-target}"

if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "fuzz-api: installing schemathesis into $VENV" >&2
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'schemathesis>=4,<5'
fi

cargo build --bins
out=$(mktemp -d "${TMPDIR:-/tmp}/mediafleet-fuzz.XXXXXX")
"$CARGO_TARGET_DIR/debug/mediafleet" serve --data-dir "$out/data" --listen "127.0.0.1:$PORT" \
  >"$out/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 60); do curl -fsS "$base/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "$base/healthz" >/dev/null

curl -fsS -F file=@fixtures/photo.jpg -F external_id=fuzz-seed "$base/v1/uploads" >/dev/null
curl -fsS -H 'Content-Type: image/png' --data-binary @fixtures/alpha.png "$base/v1/uploads" >/dev/null

rc=0
# use_after_free is off: a deleted media stays readable as `deleted` by design (docs/uploads.md).
# From $out, so schemathesis's example database (.schemathesis/) stays out of the work tree.
(cd "$out" && "$VENV/bin/schemathesis" run "$base/openapi.json" --checks all \
  --exclude-checks use_after_free --max-time "$MAX_TIME" \
  --workers 2 --report junit --report-dir "$out/report" "$@") || rc=$?
if grep -q 'panicked' "$out/serve.log"; then
  echo "fuzz-api: the server panicked (see $out/serve.log)" >&2
  rc=1
fi
echo "fuzz-api: schemathesis exit $rc; server log and report in $out" >&2
exit "$rc"
