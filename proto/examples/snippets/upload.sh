#!/bin/sh
# mediafleet from a shell: a streamed upload with an Idempotency-Key, then a presigned direct upload
# (PUT straight to S3, then complete), then polling until both media are final.
#
#   MEDIAFLEET_URL=http://127.0.0.1:8080 MEDIAFLEET_KEY=mfk_… ./upload.sh photo.jpg
#
# MEDIAFLEET_KEY may be empty on an open loopback api. Needs curl and a POSIX shell only.
set -eu
BASE=${MEDIAFLEET_URL:-http://127.0.0.1:8080}
FILE=$1
AUTH=""
[ -n "${MEDIAFLEET_KEY:-}" ] && AUTH="Authorization: Bearer $MEDIAFLEET_KEY"
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# 1. Streamed through the api. Retrying with the same Idempotency-Key returns the same media.
KEY="upload-$(date +%s)-$$"
ID1=$(curl -sS -f ${AUTH:+-H "$AUTH"} -H "Idempotency-Key: $KEY" \
  -F "file=@$FILE" -F external_id=shell-1 "$BASE/v1/uploads" | json_field id)
echo "uploaded $ID1"

# 2. Direct to S3: presign, PUT with the headers it lists, then complete.
BYTES=$(wc -c < "$FILE" | tr -d ' ')
ANSWER=$(curl -sS -f ${AUTH:+-H "$AUTH"} -H 'Content-Type: application/json' \
  -d "{\"filename\":\"$(basename "$FILE")\",\"content_type\":\"image/jpeg\",\"bytes\":$BYTES}" \
  "$BASE/v1/uploads/presign")
ID2=$(echo "$ANSWER" | json_field id)
URL=$(echo "$ANSWER" | json_field url | sed 's/\\u0026/\&/g')
curl -sS -f -X PUT -H 'Content-Type: image/jpeg' --data-binary "@$FILE" "$URL" >/dev/null
curl -sS -f ${AUTH:+-H "$AUTH"} -X POST "$BASE/v1/uploads/$ID2/complete" >/dev/null
echo "presigned $ID2"

# 3. Poll (a webhook would tell you instead; see upload.php / upload.py for verifying it).
for ID in "$ID1" "$ID2"; do
  for _ in $(seq 1 300); do
    STATUS=$(curl -sS -f ${AUTH:+-H "$AUTH"} "$BASE/v1/media/$ID" | json_field status)
    case $STATUS in ready|failed) break ;; esac
    sleep 0.2
  done
  echo "$ID $STATUS"
  [ "$STATUS" = ready ]
done
