#!/usr/bin/env bash
# Starts RabbitMQ, PostgreSQL, Redis, memcached and moto_server (S3 + SQS) when they are not already answering.
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
if ! up 11211; then
  echo "services: starting memcached" >&2
  MC_USER=(); [ "$(id -u)" = 0 ] && MC_USER=(-u root)
  memcached -d -p 11211 -U 0 -l 127.0.0.1 -m 256 "${MC_USER[@]}"
  wait_port 11211 memcached 30
fi
if ! up 5672; then
  echo "services: starting RabbitMQ" >&2
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ 90
  if grep -q rabbitmq_management /etc/rabbitmq/enabled_plugins 2>/dev/null; then wait_port 15672 "RabbitMQ management" 60; fi
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
amqp_ok() { # the port can be open while the broker no longer answers AMQP handshakes
  python3 - <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 5672), timeout=5)
    s.settimeout(10)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    sys.exit(0 if s.recv(1) == b"\x01" else 1)
except Exception:
    sys.exit(1)
PY
}
fresh_rabbit() {
  pkill -9 -u rabbitmq beam.smp 2>/dev/null || true
  pkill -9 -u rabbitmq epmd 2>/dev/null || true
  sleep 1
  rm -rf /var/lib/rabbitmq/mnesia/rabbit@*
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ 90
  if grep -q rabbitmq_management /etc/rabbitmq/enabled_plugins 2>/dev/null; then wait_port 15672 "RabbitMQ management" 60; fi
}
# Every test declares its own quorum queues; on a long-lived RabbitMQ 3.10 they pile up until the broker stops
# answering handshakes. CI (and MEDIAFLEET_RESET_BROKER=1) therefore starts from an empty broker. This deletes
# every queue on it: never set it against a broker that holds anything else.
if [ "${CI:-}" = true ] || [ "${MEDIAFLEET_RESET_BROKER:-}" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "services: resetting RabbitMQ to an empty state for the test run" >&2
    fresh_rabbit
  fi
fi
for _ in $(seq 1 60); do amqp_ok && break; sleep 1; done
if ! amqp_ok; then
  echo "services: RabbitMQ listens on 5672 but does not answer AMQP handshakes; rerun with MEDIAFLEET_RESET_BROKER=1 (as root) to reset it" >&2
  exit 1
fi
echo "services: RabbitMQ, PostgreSQL, Redis, memcached and moto are up" >&2
