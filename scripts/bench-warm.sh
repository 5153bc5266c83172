#!/usr/bin/env bash
# Measures `mediafleet ops warm` in objects/s: the batched rebuild (one DB page + one Redis pipeline per
# 500 media) side by side with one media per round trip (--batch 1), on the same seeded Postgres database
# and the same Redis, in one run. Needs Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
# Usage: scripts/bench-warm.sh [N media] (default 20000). Keys live under a throwaway prefix, removed after.
set -euo pipefail
N=${1:-20000}
BIN=${MEDIAFLEET_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/mediafleet-target}/debug/mediafleet}
PG=${MEDIAFLEET_TEST_PG:-postgres://postgres@127.0.0.1:5432}
DB=benchwarm$RANDOM$RANDOM
PREFIX=benchwarm$RANDOM
DATA=$(mktemp -d)
trap 'redis-cli --scan --pattern "$PREFIX:*" | xargs -r -n 1000 redis-cli del >/dev/null; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null; rm -rf "$DATA"' EXIT
psql "$PG/postgres" -qc "CREATE DATABASE $DB"
export MEDIAFLEET_DB=$PG/$DB MEDIAFLEET_CACHE=redis://127.0.0.1:6379/0 MEDIAFLEET_PREFIX=$PREFIX MEDIAFLEET_DATA_DIR=$DATA
"$BIN" migrate 2>/dev/null
psql "$PG/$DB" -q <<SQL
INSERT INTO media (id, kind, status, profile, source_key, filename, content_type, bytes, sha256, external_id,
                   metadata, blurhash, progress, version, created_at, updated_at)
SELECT gen_random_uuid()::text, 'image', 'ready', 'default', 'k/' || i, 'photo-' || i || '.jpg', 'image/jpeg',
       123456, md5(i::text) || md5(i::text), 'ext-' || i, '{"width":4032,"height":3024,"format":"jpeg"}',
       'LEHV6nWB2yk8pyo0adR*.7kCMdnj', 1, 3, 1700000000000 + i, 1700000000000 + i
FROM generate_series(1, $N) AS i;
INSERT INTO renditions (media_id, name, key, content_type, width, height, bytes, sha256)
SELECT id, r.name, 'k/' || id || '/' || r.name, r.ct, r.w, r.h, 20000, md5(id) || md5(id)
FROM media, (VALUES ('thumb', 'image/webp', 256, 192), ('preview', 'image/jpeg', 1280, 960)) AS r(name, ct, w, h);
SQL
echo "seeded $N media with 2 renditions each" >&2
run() { "$BIN" ops warm --all --restart "$@" 2>/dev/null; }
batched=$(run --batch 500)
redis-cli --scan --pattern "$PREFIX:*" | xargs -r -n 1000 redis-cli del >/dev/null
single=$(run --batch 1)
echo "batch 500: $batched"
echo "batch 1:   $single"
python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print('ratio (batch 500 / batch 1): %.1fx' % (a['objects_per_second']/b['objects_per_second']))" "$batched" "$single"
