#!/usr/bin/env bash
# Starts RabbitMQ, PostgreSQL, Redis and moto_server (S3 + SQS) when they are not already answering.
# moto[server] >= 5.2.5 is installed into its own venv (5.2.1 breaks aws-sdk-s3 multipart).
set -euo pipefail

VENV="${MEDIAFLEET_VENV:-$HOME/.cache/mediafleet/venv}"
MOTO_PORT="${MEDIAFLEET_MOTO_PORT:-5055}"

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name seconds
  for _ in $(seq 1 "$3"); do up "$1" && return 0; sleep 1; done
  echo "services: $2 did not come up on 127.0.0.1:$1" >&2; return 1
}

if ! up 5432; then
  echo "services: starting PostgreSQL" >&2
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_port 5432 PostgreSQL 30
fi
if ! up 6379; then
  echo "services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis 30
fi
if ! up 5672; then
  echo "services: starting RabbitMQ" >&2
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ 90
fi
# In-flight (unacked) counts for the scaler and KEDA's protocol: http need the management API (15672).
if ! up 15672; then rabbitmq-plugins enable rabbitmq_management >/dev/null && wait_port 15672 "RabbitMQ management" 60; fi
if ! "$VENV/bin/python" -c 'import moto, sys; v=tuple(int(x) for x in moto.__version__.split(".")[:3]); sys.exit(v < (5,2,5))' 2>/dev/null; then
  echo "services: installing moto[server]>=5.2.5 into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server]>=5.2.5'
fi
if ! up "$MOTO_PORT"; then
  echo "services: starting moto_server on 127.0.0.1:$MOTO_PORT" >&2
  mkdir -p "$HOME/.cache/mediafleet"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$HOME/.cache/mediafleet/moto.log" 2>&1 &
  wait_port "$MOTO_PORT" moto_server 30
fi
echo "services: RabbitMQ, PostgreSQL, Redis and moto are up" >&2

# Tests name their queues t<tag><12 hex>.*; remove ones a crashed or killed test run left behind, so quorum
# queues do not pile up on a long-lived broker.
if command -v rabbitmqctl >/dev/null 2>&1; then
  timeout 120 rabbitmqctl -q list_queues name 2>/dev/null | grep -E '^t[a-z]*[0-9a-f]{12}\.' | while read -r q; do
    timeout 10 rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done || true
fi
