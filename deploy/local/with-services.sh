#!/usr/bin/env bash
# with-services.sh CMD...: run CMD with a real Kafka and Cassandra available.
#
# A service that already answers on its port (started by `make services-up`, or by hand) is
# used as it is and left running. One that does not is installed (Maven Central, cached in
# $SERVICES_DIR and ~/.m2), started, and stopped again when CMD ends, pass or fail.
# CMD sees KAFKA_BOOTSTRAP and CASSANDRA_NODES.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SERVICES_DIR="${SERVICES_DIR:-$PWD/.services}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
CASSANDRA_PORT="${CASSANDRA_PORT:-9042}"

answers() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

started=()
cleanup() {
  local rc=$?
  for s in "${started[@]}"; do
    bash "$here/$s.sh" stop || true
  done
  exit "$rc"
}
trap cleanup EXIT

for s in kafka cassandra; do
  port=$KAFKA_PORT; [ "$s" = cassandra ] && port=$CASSANDRA_PORT
  if answers "$port"; then
    echo "[with-services] $s already answers on 127.0.0.1:$port; using it" >&2
    continue
  fi
  t0=$SECONDS
  bash "$here/$s.sh" install
  t1=$SECONDS
  bash "$here/$s.sh" start >/dev/null
  started+=("$s")
  echo "[with-services] $s: install $((t1 - t0))s, start $((SECONDS - t1))s" >&2
done

export KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
export CASSANDRA_NODES="127.0.0.1:$CASSANDRA_PORT"
"$@"
